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
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// typeReport is what decoding a file found besides what Validate finds:
// unknown keys, values of the wrong type and empty list elements, each
// named by its key where the file allows, with the paths of the values
// they name. yaml leaves a zero in such a value's place, which is not what
// the file wrote.
type typeReport struct {
	problems []error
	// mistyped are the paths whose problems Validate would report again
	// for the zero; nil when they cannot be told (a shared list lost an
	// element, moving the rest up).
	mistyped map[string]bool
}

// decode decodes data strictly (unknown keys are errors) into a Config
// whose durations the file leaves out are unsetDuration, and reports what
// yaml found wrong. A repeated key or a file that is not YAML is err: yaml
// then leaves out whole mappings, and what Validate would say of them is
// not so.
func decode(data []byte) (*Config, typeReport, error) {
	c := unsetConfig()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(c)
	var te *yaml.TypeError
	if err != nil && !errors.Is(err, io.EOF) {
		var ok bool
		if te, ok = errors.AsType[*yaml.TypeError](err); !ok {
			return decodeUntagged(data, err)
		}
	}
	var more []error
	if err := oneDocument(dec); err != nil {
		more = append(more, err)
	}
	var doc yaml.Node
	_ = yaml.Unmarshal(data, &doc) // it decoded above
	w := typedWalk{values: map[typedKey][]typedValue{}, empty: map[string]int{}, unknown: map[unknownKey][]string{}}
	if len(doc.Content) > 0 {
		w.walk(doc.Content[0], "", reflect.TypeFor[Config](), false)
	}
	frac := w.fractional()
	if te == nil && len(w.empty) == 0 && len(frac) == 0 {
		return c, typeReport{problems: more}, nil
	}
	rep, duplicate := w.report(te, frac)
	rep.problems = append(more, rep.problems...)
	switch {
	case duplicate:
		// Not validated further, but the problems yaml found may still
		// echo a secret.
		return nil, typeReport{}, c.withoutSecrets(errors.Join(rep.problems...))
	case w.sharedDropped:
		// A placeholder put into a shared list for one path may not fit
		// another: the file is not decoded again, and the indices after
		// the dropped element are moved up.
		rep.mistyped = nil
	case w.dropped:
		// Decoded again with a zero in the dropped elements' places,
		// each element keeps the index the file gives it, which Validate
		// names.
		c = unsetConfig()
		_ = doc.Decode(c) // its problems are those found above
	}
	return c, rep, nil
}

// decodeUntagged handles err, a failure to decode data that is not one of
// yaml's TypeErrors: data is not YAML, or a value does not fit the tag the
// file gave it ("password: !!int s3cret"). yaml names such a value, which
// may be a secret, and not its line, and decodes nothing more: each is
// named here by its key and line instead, and data is decoded again
// without those tags, so that the file's other problems are reported with
// them. Any other value yaml quotes is left out.
func decodeUntagged(data []byte, err error) (*Config, typeReport, error) {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil {
		return nil, typeReport{}, fmt.Errorf("config: %w", err) // not YAML: yaml's words quote no value
	}
	untagged := bytes.Split(bytes.Clone(data), []byte("\n"))
	var problems []error
	paths := map[string]bool{}
	blanked := true // every bad tag: decoded again, the file would fail again
	for _, n := range walkTagged(&doc, "", nil) {
		var v any
		if n.node.Decode(&v) == nil {
			continue
		}
		switch {
		case n.path == "": // the whole file is the tagged value
			problems = append(problems, fmt.Errorf("config: the file's value does not fit its tag %s (line %d); remove the tag", n.node.Tag, n.node.Line))
		case !keyPath.MatchString(n.path): // under a key no configuration has
			problems = append(problems, fmt.Errorf("line %d: a value does not fit its tag %s; remove the tag", n.node.Line, n.node.Tag))
		default:
			problems = append(problems, fmt.Errorf("%s: its value does not fit its tag %s (line %d); remove the tag", n.path, n.node.Tag, n.node.Line))
		}
		paths[n.path] = true
		blanked = blankTag(untagged[n.node.Line-1], n.node.Column-1) && blanked
	}
	if len(problems) == 0 {
		return nil, typeReport{}, fmt.Errorf("config: %s", quoted.ReplaceAllLiteralString(err.Error(), "(a value, not repeated)"))
	}
	if !blanked {
		return nil, typeReport{}, errors.Join(problems...)
	}
	c, rep, err := decode(bytes.Join(untagged, []byte("\n")))
	if err != nil {
		return nil, typeReport{}, errors.Join(append(problems, err)...)
	}
	// What the values say without their tags is the tags' problem.
	rep.problems = slices.DeleteFunc(rep.problems, func(e error) bool {
		field, _, _ := strings.Cut(e.Error(), ":")
		return within(field, paths)
	})
	rep.problems = append(problems, rep.problems...)
	if rep.mistyped == nil {
		rep.mistyped = map[string]bool{}
	}
	maps.Copy(rep.mistyped, paths)
	return c, rep, nil
}

// blankTag overwrites with spaces the tag that starts at the column'th
// character of line (yaml counts characters, not bytes) and runs to the
// next blank, so that the line's other positions stay where they were. It
// reports whether a tag (a "!") stood there.
func blankTag(line []byte, column int) bool {
	i := 0
	for ; column > 0 && i < len(line); column-- {
		_, size := utf8.DecodeRune(line[i:])
		i += size
	}
	if i >= len(line) || line[i] != '!' {
		return false
	}
	for ; i < len(line) && line[i] != ' ' && line[i] != '\t' && line[i] != '\r'; i++ {
		line[i] = ' '
	}
	return true
}

// keyPath is a path of keys of the shape configuration keys have.
var keyPath = regexp.MustCompile(`^[a-z_0-9]+(\[\d+\])?(\.[a-z_0-9]+(\[\d+\])?)*$`)

// quoted is a value as yaml's messages quote it.
var quoted = regexp.MustCompile("`[^`]*`")

type taggedNode struct {
	path string
	node *yaml.Node
}

// walkTagged appends to found the scalars below n that carry a tag the
// file wrote, with their paths.
func walkTagged(n *yaml.Node, path string, found []taggedNode) []taggedNode {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			found = walkTagged(c, path, found)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			found = walkTagged(c, elementPath(path, i), found)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			found = walkTagged(n.Content[i+1], keyPathOf(path, n.Content[i].Value), found)
		}
	case yaml.ScalarNode:
		if n.Style&yaml.TaggedStyle != 0 {
			found = append(found, taggedNode{path, n})
		}
	}
	return found
}

// keyPathOf is the path of key in the mapping at path (accounts[0] and
// id make accounts[0].id), as problems name values.
func keyPathOf(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// elementPath is the path of the i'th element of the list at path.
func elementPath(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// oneDocument refuses a file whose documents after the one decoded hold
// anything: yaml reads one document at a time, and a second one (after
// "---") would be left out without a word, its callers with it. An empty
// one (a "---" that ends the file) leaves nothing out.
func oneDocument(dec *yaml.Decoder) error {
	for {
		var next yaml.Node
		switch err := dec.Decode(&next); {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return fmt.Errorf("config: a second YAML document follows, which backupd would not read, and it is not YAML either: %w", err)
		case len(next.Content) > 0 && next.Content[0].Tag != "!!null":
			return fmt.Errorf("config: a second YAML document begins at line %d; backupd reads one: remove the ---, or join the documents", next.Line)
		}
	}
}

func unsetConfig() *Config {
	return &Config{UpstreamTimeout: unsetDuration, MaxWait: unsetDuration, ShutdownTimeout: unsetDuration,
		SharedState: SharedState{Redis: Redis{WaitTimeout: unsetDuration, KeyPrefix: unsetString}}}
}

// report names the file's empty list elements, its fractional values of
// whole-number fields (frac, from fractional), and yaml's reports in te
// (nil when it had none) by their keys where the walk can tell; duplicate
// is set when a key is repeated.
func (w *typedWalk) report(te *yaml.TypeError, frac []typedValue) (rep typeReport, duplicate bool) {
	rep.mistyped = map[string]bool{}
	for _, path := range slices.Sorted(maps.Keys(w.empty)) {
		// yaml leaves an empty element of a list out without a word.
		rep.problems = append(rep.problems, fmt.Errorf("%s: is empty (line %d); give it a value or remove its -", path, w.empty[path]))
		rep.mistyped[path] = true
	}
	for _, v := range frac {
		// yaml decodes 1.5 into a whole-number field as 1, without a
		// word: the file asked for something backupd does not do.
		rep.problems = append(rep.problems, fmt.Errorf("%s: must be %s; got `%s` (line %d)", v.path, wanted(v.t), v.n.Value, v.n.Line))
		rep.mistyped[v.path] = true
	}
	if te == nil {
		return rep, false
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
			e = w.nameUnknown(m[1], m[2])
		} else if paths, named := w.explain(e); len(paths) > 0 {
			e = named
			for _, p := range paths {
				rep.mistyped[p] = true
			}
		}
		duplicate = duplicate || strings.Contains(e, "already defined") || strings.Contains(e, "already set")
		rep.problems = append(rep.problems, errors.New(e))
	}
	return rep, duplicate
}

// nameUnknown names a key Config does not know (yaml's report says "line
// N" and the key), by the section that holds it where the walk can tell.
func (w *typedWalk) nameUnknown(line, key string) string {
	n, _ := strconv.Atoi(strings.TrimPrefix(line, "line "))
	if sections := w.unknown[unknownKey{n, key}]; len(sections) == 1 && sections[0] != "" {
		return fmt.Sprintf("%s: %s is not a configuration key here (%s; see the README's example)", sections[0], key, line)
	}
	return fmt.Sprintf("%s: %s is not a configuration key here (see the README's example)", line, key)
}

// without returns the problems in err (an errors.Join) except those of the
// mistyped paths and what they hold: the zero yaml left there, not what
// the file wrote.
func (rep typeReport) without(err error) []error {
	if err == nil {
		return nil
	}
	all := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		all = j.Unwrap()
	}
	return slices.DeleteFunc(all, func(e error) bool {
		field, _, _ := strings.Cut(e.Error(), ":")
		return within(field, rep.mistyped)
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

// typeErrorRe matches yaml's report of a value of the wrong type, which
// names the line but not the key, and Go's types rather than the file's.
var typeErrorRe = regexp.MustCompile("(?s)^line (\\d+): cannot unmarshal !!(\\w+)(?: `(.*)`)? into (\\S+)$")

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
	// unknown holds the paths of the mappings that hold each key Config
	// does not know (more than one when the mapping is shared).
	unknown map[unknownKey][]string
}

// unknownKey is a key Config does not know, where the file writes it.
type unknownKey struct {
	line int
	key  string
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
	t = pointee(t)
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
			p := elementPath(path, i)
			w.walk(item, p, t.Elem(), shared)
			if fits(item, t.Elem()) {
				continue
			}
			if v, _ := resolve(item, false); v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
				w.empty[p] = item.Line
			}
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

// pointee is what yaml decodes into for a value of type t: what a pointer
// points at.
func pointee(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
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
			// yaml reports it by its line alone; report names its section.
			at := unknownKey{key.Line, key.Value}
			w.unknown[at] = append(w.unknown[at], path)
			continue
		}
		w.walk(value, keyPathOf(path, key.Value), f.Type, shared)
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
	n, _ = resolve(n, false)
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		switch t.Kind() {
		case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Interface:
			return true
		}
		return false
	}
	switch t = pointee(t); t.Kind() {
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
	switch t = pointee(t); t.Kind() {
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
	wrong := w.wrong(typedKey{line, kind, m[4]})
	if len(wrong) > 1 && kind == yaml.ScalarNode {
		// Several wrong values on one line (flow style): the one yaml
		// quotes, when it quotes it whole.
		if same := slices.DeleteFunc(slices.Clone(wrong), func(v typedValue) bool { return v.n.Value != m[3] }); len(same) == 1 {
			wrong = same
		}
	}
	for _, v := range wrong {
		paths = append(paths, v.path)
	}
	if len(wrong) != 1 {
		return paths, e
	}
	return paths, fmt.Sprintf("%s: must be %s; got %s (line %d)", paths[0], wanted(wrong[0].t), got, line)
}

// wrong returns the values that fit k and that yaml cannot decode:
// several values of one type may start on one line (flow style), and one
// value may stand at several paths (an alias's, a merged one's).
func (w *typedWalk) wrong(k typedKey) []typedValue {
	var vs []typedValue
	for _, v := range w.values[k] {
		if v.n.Decode(reflect.New(v.t).Interface()) != nil {
			vs = append(vs, v)
		}
	}
	return vs
}

// fractional returns, by path, the values of whole-number fields that the
// file writes as numbers with a fraction or an exponent (1.5, 1e3), which
// yaml cuts to a whole number rather than report.
func (w *typedWalk) fractional() []typedValue {
	var vs []typedValue
	for _, l := range w.values {
		for _, v := range l {
			// One yaml cannot decode (.inf, 1e30) it reports itself.
			if isWhole(v.t) && v.n.Kind == yaml.ScalarNode && v.n.ShortTag() == "!!float" && v.n.Decode(reflect.New(v.t).Interface()) == nil {
				vs = append(vs, v)
			}
		}
	}
	slices.SortFunc(vs, func(a, b typedValue) int { return strings.Compare(a.path, b.path) })
	return vs
}

// isWhole reports whether t is a whole-number field's type (durations
// have their own form, which yaml checks).
func isWhole(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return t != reflect.TypeFor[time.Duration]()
	}
	return false
}

// wanted says in the file's terms what a value of type t must be.
func wanted(t reflect.Type) string {
	if t == reflect.TypeFor[time.Duration]() {
		return "a duration such as 500ms, 10s or 1m"
	}
	switch t.Kind() {
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Bool:
		return "true or false"
	case reflect.String:
		return "a string"
	case reflect.Slice:
		if pointee(t.Elem()).Kind() == reflect.String {
			return "a list of strings"
		}
		return "a list"
	}
	return "a mapping"
}
