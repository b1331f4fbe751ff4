// Package shape holds the test that keeps the repository's Go code in
// pieces a newcomer can hold in their head (docs/development.md, "Shape
// of the code"): no hand-written .go file over 500 lines, no function over
// 60 lines and no function whose cyclomatic complexity is over 12, tests
// included. It has no code of its own; its test reads the module's sources.
package shape
