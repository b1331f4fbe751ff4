package shape

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The limits (issue 17): a file, a function, and the paths through one.
const (
	maxFileLines = 500
	maxFuncLines = 60
	maxCyclo     = 12
)

func TestEveryGoFileAndFunctionFitsTheLimits(t *testing.T) {
	root := moduleRoot(t)
	var problems []string
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && skipDir(d.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		files++
		rel, _ := filepath.Rel(root, path)
		found, err := check(path, rel)
		problems = append(problems, found...)
		return err
	})
	require.NoError(t, err)
	require.Greater(t, files, 100, "the walk found the module's sources")
	assert.Empty(t, problems, "split these where they do several things (docs/development.md, \"Shape of the code\")")
}

// The limits are enforced: a file that breaks each one is reported.
func TestCheckReportsEachLimit(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	b.WriteString("package x\n\nfunc long() {\n")
	for range maxFuncLines {
		b.WriteString("\t_ = 1\n")
	}
	b.WriteString("}\n\nfunc branchy(a, b bool) {\n")
	for range maxCyclo {
		b.WriteString("\tif a && b {\n\t}\n")
	}
	b.WriteString("}\n")
	for range maxFileLines {
		b.WriteString("\n")
	}
	path := filepath.Join(dir, "x.go")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	got, err := check(path, "x.go")
	require.NoError(t, err)
	require.Len(t, got, 3, "%q", got)
	assert.Contains(t, got[0], "x.go: 5")
	assert.Contains(t, got[0], "lines (limit 500)")
	assert.Contains(t, got[1], "x.go:3 long: 62 lines (limit 60)")
	assert.Contains(t, got[2], "branchy: cyclomatic complexity 25 (limit 12)")

	small := filepath.Join(dir, "y.go")
	require.NoError(t, os.WriteFile(small, []byte("package x\n\nfunc f(a bool) int {\n\tif a {\n\t\treturn 1\n\t}\n\treturn 0\n}\n"), 0o644))
	got, err = check(small, "y.go")
	require.NoError(t, err)
	assert.Empty(t, got)
}

func moduleRoot(t *testing.T) string {
	dir, err := filepath.Abs(".")
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, parent, dir, "no go.mod above the test")
		dir = parent
	}
}

// skipDir leaves out what is not the project's hand-written Go: test
// data, build output and hidden folders (.git, .dev, .cluster).
func skipDir(name string) bool {
	return name == "testdata" || name == "bin" || name == "node_modules" || strings.HasPrefix(name, ".")
}

// check returns the limits path's file breaks, each a line naming where.
func check(path, rel string) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	if ast.IsGenerated(f) {
		return nil, nil
	}
	var out []string
	if n := fset.File(f.Pos()).LineCount(); n > maxFileLines {
		out = append(out, fmt.Sprintf("%s: %d lines (limit %d)", rel, n, maxFileLines))
	}
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Body == nil {
			continue
		}
		start := fset.Position(fn.Pos()).Line
		where := fmt.Sprintf("%s:%d %s", rel, start, fn.Name.Name)
		if n := fset.Position(fn.Body.Rbrace).Line - start + 1; n > maxFuncLines {
			out = append(out, fmt.Sprintf("%s: %d lines (limit %d)", where, n, maxFuncLines))
		}
		if c := cyclomatic(fn); c > maxCyclo {
			out = append(out, fmt.Sprintf("%s: cyclomatic complexity %d (limit %d)", where, c, maxCyclo))
		}
	}
	return out, nil
}

// cyclomatic is 1 plus one for each branch point: if, for, range, a case
// or select clause other than default, && and || (function literals count
// in the function that holds them), as gocyclo counts.
func cyclomatic(fn *ast.FuncDecl) int {
	c := 1
	ast.Inspect(fn, func(n ast.Node) bool {
		switch x := n.(type) {
		case *ast.IfStmt, *ast.ForStmt, *ast.RangeStmt:
			c++
		case *ast.CaseClause:
			if x.List != nil {
				c++
			}
		case *ast.CommClause:
			if x.Comm != nil {
				c++
			}
		case *ast.BinaryExpr:
			if x.Op == token.LAND || x.Op == token.LOR {
				c++
			}
		}
		return true
	})
	return c
}
