package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// decode decodes data strictly (unknown keys are errors) into a Config
// whose durations the file leaves out are unsetDuration. Unknown keys and
// values of the wrong type come back as problems, named by their key
// where the file allows, with the paths of the mistyped values: yaml
// leaves a zero in their place, which is not what the file wrote. A
// repeated key or a file that is not YAML is err: yaml then leaves out
// whole mappings, and what Validate would say of them is not so.
func decode(data []byte) (c *Config, problems []error, mistyped map[string]bool, err error) {
	c = unsetConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err = dec.Decode(c)
	var te *yaml.TypeError
	if err != nil && !errors.Is(err, io.EOF) {
		var ok bool
		if te, ok = errors.AsType[*yaml.TypeError](err); !ok {
			return nil, nil, nil, fmt.Errorf("config: %w", err)
		}
	}
	var doc yaml.Node
	_ = yaml.Unmarshal(data, &doc) // it decoded above
	w := typedWalk{values: map[typedKey][]typedValue{}, empty: map[string]int{}}
	if len(doc.Content) > 0 {
		w.walk(doc.Content[0], "", reflect.TypeFor[Config](), false)
	}
	if te == nil && len(w.empty) == 0 {
		return c, nil, nil, nil
	}
	problems, mistyped, duplicate := w.problems(te)
	if duplicate {
		return nil, nil, nil, errors.Join(problems...)
	}
	if w.sharedDropped {
		// A list that an anchor, alias or merge key may put at several
		// paths lost an element: a placeholder put into it for one path
		// may not fit another, so the file is not decoded again, and as
		// the indices after a dropped element are moved up, nothing is
		// held back.
		return c, problems, nil, nil
	}
	if w.dropped {
		// yaml leaves a list's element of the wrong kind out, and moves
		// the rest up: decoded again with a zero in its place, each
		// element keeps the index the file gives it, which Validate names.
		c = unsetConfig()
		_ = doc.Decode(c) // its problems are those found above
	}
	return c, problems, mistyped, nil
}

// problems are the file's empty list elements, and yaml's reports in te
// (nil when it had none) named by their keys where the walk can tell,
// with the paths of the values they name; duplicate is set when a key is
// repeated.
func (w *typedWalk) problems(te *yaml.TypeError) (problems []error, mistyped map[string]bool, duplicate bool) {
	mistyped = map[string]bool{}
	for _, path := range slices.Sorted(maps.Keys(w.empty)) {
		// yaml leaves an empty element of a list out without a word.
		problems = append(problems, fmt.Errorf("%s: is empty (line %d); give it a value or remove its -", path, w.empty[path]))
		mistyped[path] = true
	}
	if te == nil {
		return problems, mistyped, false
	}
	seen := map[string]bool{}
	for _, e := range te.Errors {
		if seen[e] {
			// yaml reports an alias's wrong value once per use, and
			// several values on one line alike.
			continue
		}
		seen[e] = true
		if m := unknownKeyRe.FindStringSubmatch(e); m != nil {
			e = fmt.Sprintf("%s: %s is not a configuration key here (see the README's example)", m[1], m[2])
		} else if paths, named := w.explain(e); len(paths) > 0 {
			e = named
			for _, p := range paths {
				mistyped[p] = true
			}
		}
		duplicate = duplicate || strings.Contains(e, "already defined") || strings.Contains(e, "already set")
		problems = append(problems, errors.New(e))
	}
	return problems, mistyped, duplicate
}

func unsetConfig() *Config {
	return &Config{UpstreamTimeout: unsetDuration, MaxWait: unsetDuration, ShutdownTimeout: unsetDuration}
}

// typeErrorRe matches yaml's report of a value of the wrong type, which
// names the line but not the key, and Go's types rather than the file's.
var typeErrorRe = regexp.MustCompile("(?s)^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")

// wantedKinds says in the file's terms what a Go type wants.
var wantedKinds = map[string]string{
	"float64":       "a number",
	"int":           "a whole number",
	"bool":          "true or false",
	"string":        "a string",
	"[]string":      "a list of strings",
	"time.Duration": "a duration such as 500ms, 10s or 1m",
}

// typedKey is what yaml's report of a wrong type says of a value: the line
// it starts on (an alias's value starts at its anchor), its kind, and the
// Go type it was to be decoded into.
type typedKey struct {
	line   int
	kind   yaml.Kind
	goType string
}

// typedWalk finds the key paths (accounts[0].limits.create_backup) of the
// values in a file under the keys Config knows.
type typedWalk struct {
	values map[typedKey][]typedValue
	// dropped is set when a list holds an element of the wrong kind,
	// which yaml leaves out; the walk puts a zero in its place.
	dropped bool
	// sharedDropped is set when such a list is one that an anchor, alias
	// or merge key may put at several paths: the walk leaves it alone.
	sharedDropped bool
	// empty holds the lines of the empty elements of lists by path, which
	// yaml leaves out without a word.
	empty map[string]int
}

// typedValue is a value of the file at a key path.
type typedValue struct {
	path string
	n    *yaml.Node
	t    reflect.Type
}

// walk walks the value n at path, which yaml decodes into t; shared says
// whether an anchor, alias or merge key may put n at other paths too.
func (w *typedWalk) walk(n *yaml.Node, path string, t reflect.Type, shared bool) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem() // yaml decodes into what a pointer points at
	}
	n, shared = resolve(n, shared)
	if path != "" {
		k := typedKey{n.Line, n.Kind, t.String()}
		if l := w.values[k]; len(l) == 0 || l[len(l)-1].path != path {
			w.values[k] = append(l, typedValue{path, n, t})
		}
	}
	switch {
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if fits(item, t.Elem()) {
				w.walk(item, p, t.Elem(), shared)
				continue
			}
			if v, _ := resolve(item, false); v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
				w.empty[p] = item.Line
			}
			w.walk(item, p, t.Elem(), shared)
			w.dropped = true
			if shared {
				w.sharedDropped = true
				continue
			}
			n.Content[i] = placeholder(t.Elem(), item)
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct:
		w.walkMapping(n, path, t, map[string]bool{}, shared)
	}
}

// resolve is the node an alias n stands for, or n; shared is set when n
// is an alias or carries an anchor, which other aliases may name.
func resolve(n *yaml.Node, shared bool) (*yaml.Node, bool) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias, true
	}
	return n, shared || n.Anchor != ""
}

// walkMapping walks the keys of the mapping n but those in set, which a
// mapping merging n sets itself, then the mappings n merges ("<<"): as in
// yaml, a key a mapping sets wins over a merged one, and the first merged
// mapping over the later ones.
func (w *typedWalk) walkMapping(n *yaml.Node, path string, t reflect.Type, set map[string]bool, shared bool) {
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, value := n.Content[i], n.Content[i+1]
		if key.Tag == "!!merge" {
			merged = append(merged, value)
			continue
		}
		if set[key.Value] {
			continue
		}
		set[key.Value] = true
		f, ok := yamlField(t, key.Value)
		if !ok {
			continue // reported as not a configuration key
		}
		p := key.Value
		if path != "" {
			p = path + "." + p
		}
		w.walk(value, p, f.Type, shared)
	}
	for _, m := range merged {
		w.walkMerged(m, path, t, set)
	}
}

// walkMerged walks the mappings a merge key brings into a mapping: what
// they hold is shared.
func (w *typedWalk) walkMerged(n *yaml.Node, path string, t reflect.Type, set map[string]bool) {
	n, _ = resolve(n, true)
	switch n.Kind {
	case yaml.MappingNode:
		w.walkMapping(n, path, t, set, true)
	case yaml.SequenceNode:
		for _, m := range n.Content {
			w.walkMerged(m, path, t, set)
		}
	}
}

// fits reports whether yaml keeps n as an element of a list of t: it
// leaves out one whose kind cannot be decoded into t at all, and a null
// unless t has a nil.
func fits(n *yaml.Node, t reflect.Type) bool {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		switch t.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			return true
		}
		return false
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return n.Kind == yaml.MappingNode
	case reflect.Slice:
		return n.Kind == yaml.SequenceNode
	default:
		return n.Kind == yaml.ScalarNode && n.Decode(reflect.New(t).Interface()) == nil
	}
}

// placeholder stands in for a list's element that yaml would leave out:
// the zero of t, which yaml keeps, at the element's place in the file.
func placeholder(t reflect.Type, at *yaml.Node) *yaml.Node {
	n := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Line: at.Line, Column: at.Column}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		n.Kind, n.Tag = yaml.MappingNode, "!!map"
	case reflect.Slice:
		n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
	case reflect.Bool:
		n.Tag, n.Value = "!!bool", "false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n.Tag, n.Value = "!!int", "0"
	case reflect.Float32, reflect.Float64:
		n.Tag, n.Value = "!!float", "0"
	}
	return n
}

// yamlField is t's field that the key names in a file.
func yamlField(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("yaml"), ","); name == key && f.IsExported() {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// explain rewrites yaml's report of a value of the wrong type to name the
// key and what it wants, keeping the line, and returns the paths of the
// values the report fits. When several do (an alias's value, used twice),
// yaml's words stay.
func (w *typedWalk) explain(e string) (paths []string, named string) {
	m := typeErrorRe.FindStringSubmatch(e)
	if m == nil {
		return nil, e
	}
	line, _ := strconv.Atoi(m[1])
	// yaml cuts a long value at a byte count, which may split a character.
	kind, got := yaml.ScalarNode, "`"+strings.ToValidUTF8(m[3], "")+"`"
	switch m[2] {
	case "seq":
		kind, got = yaml.SequenceNode, "a list"
	case "map":
		kind, got = yaml.MappingNode, "a mapping"
	}
	paths = w.wrong(typedKey{line, kind, m[4]})
	if len(paths) != 1 {
		return paths, e
	}
	want, known := wantedKinds[m[4]]
	switch {
	case known:
	case strings.HasPrefix(m[4], "[]"):
		want = "a list"
	default:
		want = "a mapping"
	}
	return paths, fmt.Sprintf("%s: must be %s; got %s (line %d)", paths[0], want, got, line)
}

// wrong returns the paths of the values that fit k and that yaml cannot
// decode: several values of one type may start on one line (flow style),
// and one value may stand at several paths (an alias's, a merged one's).
func (w *typedWalk) wrong(k typedKey) []string {
	var paths []string
	for _, v := range w.values[k] {
		if v.n.Decode(reflect.New(v.t).Interface()) != nil {
			paths = append(paths, v.path)
		}
	}
	return paths
}

// besides returns the problems in err (an errors.Join) except those of
// the mistyped paths and what they hold: yaml leaves such a value at its
// zero, which is not what the file wrote, and the type error names it.
func besides(err error, mistyped map[string]bool) []error {
	if err == nil {
		return nil
	}
	all := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all = j.Unwrap()
	}
	return slices.DeleteFunc(all, func(e error) bool {
		field, _, _ := strings.Cut(e.Error(), ":")
		return within(field, mistyped)
	})
}

// within reports whether the key path (accounts[0].limits) is one of
// paths or lies inside one.
func within(path string, paths map[string]bool) bool {
	for {
		if paths[path] {
			return true
		}
		i := strings.LastIndexAny(path, ".[")
		if i <= 0 {
			return false
		}
		path = path[:i]
	}
}
