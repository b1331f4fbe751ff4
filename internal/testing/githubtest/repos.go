package githubtest

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"
)

type repoState struct {
	owner, name   string
	id            int64
	defaultBranch string
	branches      map[string]string            // branch -> commit SHA
	files         map[string]map[string][]byte // commit SHA -> path -> content
	deployments   []*Deployment                // in creation order
	comments      []*Comment                   // in creation order
	pulls         map[int]PullRequest
	public        bool              // readable by every user (default: private)
	collaborators map[string]string // lower-cased login → permission
}

func repoKey(owner, repo string) string { return strings.ToLower(owner + "/" + repo) }

// AddRepo creates repository owner/repo with a default branch "main".
// Calls on a repository that does not exist answer 404, as GitHub does.
// Adding an existing repository does nothing.
func (s *Server) AddRepo(owner, repo string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repo(owner, repo)
}

// repo returns owner/repo, creating it. Callers hold s.mu.
func (s *Server) repo(owner, repo string) *repoState {
	k := repoKey(owner, repo)
	if r := s.repos[k]; r != nil {
		return r
	}
	r := &repoState{
		owner: owner, name: repo, id: s.id(), defaultBranch: "main",
		branches: map[string]string{"main": fakeSHA(owner, repo, "main")},
		files:    make(map[string]map[string][]byte),
	}
	s.repos[k] = r
	return r
}

// fakeSHA is a stable commit SHA for a branch the test did not give one.
func fakeSHA(parts ...string) string {
	h := sha1.Sum([]byte(strings.Join(parts, "\x00")))
	return hex.EncodeToString(h[:])
}

var hexRef = regexp.MustCompile(`^[0-9a-f]{7,64}$`)

// SetBranch points branch at commit sha (creating the repository if needed).
func (s *Server) SetBranch(owner, repo, branch, sha string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.repo(owner, repo).branches[branch] = sha
}

// SetFile stores content at path as of ref (a branch name, created if
// needed, or a commit SHA), creating the repository if needed. The contents
// API then serves it for that ref (and for the branch's SHA).
func (s *Server) SetFile(owner, repo, ref, filePath, content string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repo(owner, repo)
	if ref == "" {
		ref = r.defaultBranch
	}
	commit, ok := r.resolve(ref)
	if !ok {
		commit = fakeSHA(owner, repo, ref)
		r.branches[ref] = commit
	}
	if r.files[commit] == nil {
		r.files[commit] = make(map[string][]byte)
	}
	r.files[commit][strings.Trim(filePath, "/")] = []byte(content)
}

// resolve turns a ref (branch, refs/heads/branch, or commit SHA) into a
// commit SHA; "" is the default branch.
func (r *repoState) resolve(ref string) (string, bool) {
	if ref == "" {
		ref = r.defaultBranch
	}
	ref = strings.TrimPrefix(ref, "refs/heads/")
	if sha, ok := r.branches[ref]; ok {
		return sha, true
	}
	if hexRef.MatchString(ref) {
		return ref, true // any commit-shaped ref exists
	}
	return "", false
}

// repoFor finds the request's repository or answers 404. Callers hold s.mu.
func (s *Server) repoFor(c *call) *repoState {
	r := s.repos[repoKey(c.r.PathValue("owner"), c.r.PathValue("repo"))]
	if r == nil {
		writeError(c.w, http.StatusNotFound, "Not Found")
	}
	return r
}

func (r *repoState) apiURL(c *call) string  { return c.apiBase + "/repos/" + r.owner + "/" + r.name }
func (r *repoState) htmlURL(c *call) string { return c.origin + "/" + r.owner + "/" + r.name }

// contentEntry is the contents API's shape for a file or directory entry.
type contentEntry struct {
	Type        string            `json:"type"`
	Encoding    string            `json:"encoding,omitempty"`
	Size        int               `json:"size"`
	Name        string            `json:"name"`
	Path        string            `json:"path"`
	Content     *string           `json:"content,omitempty"`
	SHA         string            `json:"sha"`
	URL         string            `json:"url"`
	GitURL      string            `json:"git_url"`
	HTMLURL     string            `json:"html_url"`
	DownloadURL *string           `json:"download_url"`
	Links       map[string]string `json:"_links"`
}

func (s *Server) getContent(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.repoFor(c)
	if r == nil {
		return
	}
	ref := c.r.URL.Query().Get("ref")
	commit, ok := r.resolve(ref)
	if !ok {
		writeError(c.w, http.StatusNotFound, "No commit found for the ref "+ref)
		return
	}
	if ref == "" {
		ref = r.defaultBranch
	}
	at := contentsAt{c: c, r: r, ref: ref}
	p := strings.Trim(c.r.PathValue("path"), "/")
	files := r.files[commit]
	if content, ok := files[p]; ok {
		writeJSON(c.w, http.StatusOK, at.file(p, content))
		return
	}
	list := at.dir(files, p)
	if len(list) == 0 {
		writeError(c.w, http.StatusNotFound, "Not Found")
		return
	}
	writeJSON(c.w, http.StatusOK, list)
}

// contentsAt answers the contents API for repository r at ref (the
// request's ref, or the default branch).
type contentsAt struct {
	c   *call
	r   *repoState
	ref string
}

// entry is the entry of path p, of type "file" or "dir"; a directory's
// content is what its SHA is made from.
func (at contentsAt) entry(p, typ string, content []byte) contentEntry {
	c, r, ref := at.c, at.r, at.ref
	blob := gitBlobSHA(content)
	e := contentEntry{
		Type: typ, Size: len(content), Name: path.Base(p), Path: p, SHA: blob,
		URL:     r.apiURL(c) + "/contents/" + p + "?ref=" + url.QueryEscape(ref),
		GitURL:  r.apiURL(c) + "/git/blobs/" + blob,
		HTMLURL: r.htmlURL(c) + "/blob/" + ref + "/" + p,
	}
	if typ == "dir" {
		e.Size, e.GitURL, e.HTMLURL = 0, r.apiURL(c)+"/git/trees/"+blob, r.htmlURL(c)+"/tree/"+ref+"/"+p
	} else {
		dl := c.origin + "/raw/" + r.owner + "/" + r.name + "/" + ref + "/" + p
		e.DownloadURL = &dl
	}
	e.Links = map[string]string{"self": e.URL, "git": e.GitURL, "html": e.HTMLURL}
	return e
}

// file is the entry of file p with its content inlined (base64).
func (at contentsAt) file(p string, content []byte) contentEntry {
	e := at.entry(p, "file", content)
	e.Encoding = "base64"
	enc := wrap60(base64.StdEncoding.EncodeToString(content))
	if len(content) > 1<<20 { // the contents API does not inline files over 1 MB
		e.Encoding, enc = "none", ""
	}
	e.Content = &enc
	return e
}

// dir lists the direct children of directory p ("": the root) among
// files, by name; none when there is no such directory.
func (at contentsAt) dir(files map[string][]byte, p string) []contentEntry {
	prefix := p + "/"
	if p == "" {
		prefix = ""
	}
	seen := map[string]bool{}
	var list []contentEntry
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		child, _, isDir := strings.Cut(rest, "/")
		if seen[child] {
			continue
		}
		seen[child] = true
		if isDir {
			list = append(list, at.entry(prefix+child, "dir", []byte(prefix+child)))
		} else {
			list = append(list, at.entry(name, "file", files[name]))
		}
	}
	return list
}

// wrap60 breaks base64 into lines of 60 characters, as GitHub does.
func wrap60(s string) string {
	var b strings.Builder
	for len(s) > 60 {
		b.WriteString(s[:60] + "\n")
		s = s[60:]
	}
	b.WriteString(s)
	if b.Len() > 0 {
		b.WriteString("\n")
	}
	return b.String()
}

func gitBlobSHA(content []byte) string {
	h := sha1.New()
	fmt.Fprintf(h, "blob %d\x00", len(content))
	h.Write(content)
	return hex.EncodeToString(h.Sum(nil))
}
