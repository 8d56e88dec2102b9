package badrequest

import (
	"slices"
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
