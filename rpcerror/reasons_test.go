package rpcerror

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestReasonsAreTheREADMEs: the ErrorInfo reasons, which clients branch
// on, are this package's Reason and reason constants, each in the reason
// column of the README's error table, and that column names no other. A
// reason written as a literal where a status is mapped would escape the
// comparison, so no UPPER_SNAKE literal stands outside the constants.
func TestReasonsAreTheREADMEs(t *testing.T) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "rpcerror.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var code []string
	inConst := map[*ast.BasicLit]bool{}
	upperSnake := regexp.MustCompile(`^"[A-Z][A-Z_]*[A-Z]"$`)
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.ValueSpec:
			for i, name := range n.Names {
				if i >= len(n.Values) {
					break
				}
				lit, ok := n.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				inConst[lit] = true
				if strings.HasPrefix(strings.ToLower(name.Name), "reason") {
					v, _ := strconv.Unquote(lit.Value)
					code = append(code, v)
				}
			}
		case *ast.BasicLit:
			if upperSnake.MatchString(n.Value) && !inConst[n] {
				t.Errorf("%s: %s, a reason written as a literal; name it with the others", fset.Position(n.Pos()), n.Value)
			}
		}
		return true
	})

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(readme), "| cause | gRPC code | HTTP | reason |")
	if !ok {
		t.Fatal("the README has no error table with a reason column")
	}
	table, _, _ = strings.Cut(table, "\n\n")
	var documented []string
	for row := range strings.Lines(table) {
		cells := strings.Split(strings.TrimSpace(row), "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range regexp.MustCompile("`([A-Z_]+)`").FindAllStringSubmatch(cells[len(cells)-2], -1) {
			documented = append(documented, m[1])
		}
	}

	slices.Sort(code)
	code = slices.Compact(code)
	slices.Sort(documented)
	documented = slices.Compact(documented)
	if len(code) < 30 {
		t.Fatalf("found %d reasons in rpcerror.go, fewer than it has: %q", len(code), code)
	}
	for _, r := range code {
		if !slices.Contains(documented, r) {
			t.Errorf("reason %s is not in the README's error table", r)
		}
	}
	for _, r := range documented {
		if !slices.Contains(code, r) {
			t.Errorf("the README's error table names reason %s, which backupd does not give", r)
		}
	}
}
