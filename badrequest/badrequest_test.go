package badrequest

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestError(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  Error
		want string
	}{
		{"one", Error{Violations: []Violation{{"backup_name", "backup_name must be 3-255 characters; got 2"}}},
			"backup_name must be 3-255 characters; got 2"},
		{"two", Error{Violations: []Violation{{"a", "a is bad"}, {"b", "b is bad"}}}, "a is bad; b is bad"},
		{"more left out", Error{Violations: []Violation{{"a", "a is bad"}}, More: 3}, "a is bad; and 3 more"},
		{"one left out", Error{Violations: []Violation{{"a", "a is bad"}}, More: 1}, "a is bad; and 1 more"},
	} {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestQuote(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"Orders", `"Orders"`},
		{"a\nb", `"a\nb"`},
		{strings.Repeat("x", 64), `"` + strings.Repeat("x", 64) + `"`},
		{strings.Repeat("x", 65), `"` + strings.Repeat("x", 64) + `"... (65 bytes)`},
	} {
		if got := Quote(tt.in); got != tt.want {
			t.Errorf("Quote(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestBesideLeavesOutFieldsNamedAndThoseInside(t *testing.T) {
	named := []Violation{{Field: "backup_name"}, {Field: "override"}, {Field: "tags[1]"}}
	more := []Violation{{Field: "backup_name"}, {Field: "backup_name_x"}, {Field: "override.read"}, {Field: "overrides"},
		{Field: "tags[1].key"}, {Field: "tags[10]"}, {Field: "account_id"}}
	var got []string
	for _, v := range Beside(named, more) {
		got = append(got, v.Field)
	}
	if want := []string{"backup_name_x", "overrides", "tags[10]", "account_id"}; !slices.Equal(got, want) {
		t.Errorf("Beside kept %q, want %q", got, want)
	}
}

// TestBesideIsWithin: Beside leaves out exactly the violations Within one
// of those named, quoted keys holding a '.' or '[' and an empty name too.
func TestBesideIsWithin(t *testing.T) {
	fields := []string{"", "a", "a.b", "a[0]", "a[0].b", "a[01]", "ab", `"a.b"`, `"a.b".c`, `"a`, "a.", "[", ".x", "a[0][1]"}
	for _, n := range fields {
		for _, m := range fields {
			got := len(Beside([]Violation{{Field: n}}, []Violation{{Field: m}})) == 0
			if want := Within(m, n); got != want {
				t.Errorf("%q beside %q named: left out %v; Within says %v", m, n, got, want)
			}
		}
	}
}

// BenchmarkBeside: thousands of fields named, and as many more inside
// them, as a REST body of thousands of list elements of the wrong type
// gives; searched for one by one among those named, 30,000 of each took
// seconds (go test -bench Beside ./badrequest/).
func BenchmarkBeside(b *testing.B) {
	const n = 30000
	named, more := make([]Violation, n), make([]Violation, 0, 2*n)
	for i := range n {
		f := "indexes[" + strconv.Itoa(i) + "]"
		named[i] = Violation{Field: f}
		more = append(more, Violation{Field: f + ".index_name"}, Violation{Field: "other[" + strconv.Itoa(i) + "]"})
	}
	for b.Loop() {
		if got := Beside(named, more); len(got) != n {
			b.Fatalf("Beside of %d named and %d more kept %d; want %d", n, len(more), len(got), n)
		}
	}
}
