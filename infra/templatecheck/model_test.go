package templatecheck

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
)

// repoRoot is where template.yaml, the Makefile and samconfig.toml live.
const repoRoot = "../.."

// checkedFiles are the files the checks read, relative to repoRoot.
var checkedFiles = []string{"template.yaml", "Makefile", "samconfig.toml"}

// samGaps are AWS::Serverless::Function properties that goformation
// v7.14.9's SAM model predates (SAM added LoggingConfig in Nov 2023). Its
// resource decoders refuse unknown properties, so these are removed from
// the copy goformation reads; the raw checks cover them.
var samGaps = []string{"LoggingConfig"}

// stack is template.yaml read twice, plus the files it must agree with.
type stack struct {
	// raw is the template with every intrinsic function in its long form
	// ({"Ref": x}, {"Fn::GetAtt": "A.B"}, {"Fn::Sub": s}, ...): the checks
	// of references, wiring and policies read it.
	raw map[string]any
	// cfn is goformation's typed model. It resolves a Ref to a parameter to
	// the parameter's default and turns other Refs, GetAtts and unresolvable
	// Sub variables into nothing, so it serves literal values only.
	cfn *cloudformation.Template
	// text holds each of checkedFiles as read (or as a test broke it).
	text map[string]string
	// makefile is the Makefile's path, for `make -n`.
	makefile string
}

// goformation's short-form tag table (!Ref, !Sub, ...) is a package
// variable it fills on every YAML parse: one parse at a time.
var parseMu sync.Mutex

var repoStack = sync.OnceValues(func() (*stack, error) { return loadStack(nil, "") })

// loadStack reads the checked files, replacing those named in broken by
// the given text; a broken Makefile is written to dir for make to run.
func loadStack(broken map[string]string, dir string) (*stack, error) {
	s := &stack{text: map[string]string{}, makefile: filepath.Join(repoRoot, "Makefile")}
	for _, name := range checkedFiles {
		if text, ok := broken[name]; ok {
			s.text[name] = text
			continue
		}
		b, err := os.ReadFile(filepath.Join(repoRoot, name))
		if err != nil {
			return nil, err
		}
		s.text[name] = string(b)
	}
	if text, ok := broken["Makefile"]; ok {
		s.makefile = filepath.Join(dir, "Makefile")
		if err := os.WriteFile(s.makefile, []byte(text), 0o644); err != nil {
			return nil, err
		}
	}

	parseMu.Lock()
	longForm, err := intrinsics.ProcessYAML([]byte(s.text["template.yaml"]), &intrinsics.ProcessorOptions{NoProcess: true})
	parseMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("reading template.yaml: %w", err)
	}
	if err := json.Unmarshal(longForm, &s.raw); err != nil {
		return nil, fmt.Errorf("decoding template.yaml: %w", err)
	}

	var forTyped map[string]any // a copy without samGaps
	if err := json.Unmarshal(longForm, &forTyped); err != nil {
		return nil, err
	}
	for _, r := range asMap(forTyped["Resources"]) {
		if asString(asMap(r)["Type"]) == "AWS::Serverless::Function" {
			for _, p := range samGaps {
				delete(asMap(asMap(r)["Properties"]), p)
			}
		}
	}
	b, err := json.Marshal(forTyped)
	if err != nil {
		return nil, err
	}
	if s.cfn, err = goformation.ParseJSON(b); err != nil {
		return nil, fmt.Errorf("goformation: template.yaml: %w", err)
	}
	return s, nil
}

// resource returns a resource's type and properties (nil if absent).
func (s *stack) resource(name string) (typ string, props map[string]any) {
	r := asMap(asMap(s.raw["Resources"])[name])
	return asString(r["Type"]), asMap(r["Properties"])
}

// ofType returns the names of the resources of a type, sorted.
func (s *stack) ofType(typ string) []string {
	var names []string
	for name, r := range asMap(s.raw["Resources"]) {
		if asString(asMap(r)["Type"]) == typ {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names
}

// parameterDefault returns a parameter's default as text ("" if none).
func (s *stack) parameterDefault(name string) string {
	p, ok := s.cfn.Parameters[name]
	if !ok || p.Default == nil {
		return ""
	}
	return fmt.Sprint(p.Default)
}

func asMap(v any) map[string]any { m, _ := v.(map[string]any); return m }
func asList(v any) []any         { l, _ := v.([]any); return l }
func asString(v any) string      { s, _ := v.(string); return s }

// intrinsic returns the function and argument of a one-key intrinsic
// object such as {"Ref": "Table"}.
func intrinsic(v any) (fn string, arg any, ok bool) {
	m := asMap(v)
	if len(m) != 1 {
		return "", nil, false
	}
	for k, a := range m {
		if k == "Ref" || strings.HasPrefix(k, "Fn::") || k == "Condition" {
			return k, a, true
		}
	}
	return "", nil, false
}

// refTo returns X of {"Ref": X}.
func refTo(v any) string {
	if fn, arg, ok := intrinsic(v); ok && fn == "Ref" {
		return asString(arg)
	}
	return ""
}

// attOf returns "X.Attr" of {"Fn::GetAtt": "X.Attr"} or ["X", "Attr"].
func attOf(v any) string {
	fn, arg, ok := intrinsic(v)
	if !ok || fn != "Fn::GetAtt" {
		return ""
	}
	if s, ok := arg.(string); ok {
		return s
	}
	parts := asList(arg)
	if len(parts) != 2 {
		return ""
	}
	return asString(parts[0]) + "." + asString(parts[1])
}

// subOf returns the text and variables of {"Fn::Sub": s} or {"Fn::Sub": [s, vars]}.
func subOf(v any) (text string, vars map[string]any, ok bool) {
	fn, arg, isFn := intrinsic(v)
	if !isFn || fn != "Fn::Sub" {
		return "", nil, false
	}
	if s, isString := arg.(string); isString {
		return s, nil, true
	}
	l := asList(arg)
	if len(l) != 2 {
		return "", nil, false
	}
	return asString(l[0]), asMap(l[1]), true
}

// subVariable matches ${Name} and ${Name.Attr} in a Sub text; ${!x} is a literal.
var subVariable = regexp.MustCompile(`\$\{([^!}][^}]*)\}`)

// show renders a value as the template writes it: "!Ref X",
// "!GetAtt X.Arn", "!Sub text", a literal as itself.
func show(v any) string {
	if r := refTo(v); r != "" {
		return "!Ref " + r
	}
	if a := attOf(v); a != "" {
		return "!GetAtt " + a
	}
	if text, _, ok := subOf(v); ok {
		return "!Sub " + text
	}
	switch v := v.(type) {
	case string:
		return v
	case nil:
		return "<none>"
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// stringsOf returns a string or a list (Action, Resource) as a list.
func stringsOf(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

// walk calls fn for every object in v, depth first, with its path.
func walk(v any, path string, fn func(path string, m map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		fn(path, v)
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walk(v[k], path+"/"+k, fn)
		}
	case []any:
		for i, e := range v {
			walk(e, fmt.Sprintf("%s[%d]", path, i), fn)
		}
	}
}

// statement is one IAM policy statement, with the condition that includes
// it when it sits in an Fn::If ("" if unconditional).
type statement struct {
	path string
	when string
	body map[string]any
}

// statements returns the statements of every policy document in v.
func statements(v any) []statement {
	var out []statement
	walk(v, "", func(path string, m map[string]any) {
		list, ok := m["Statement"].([]any)
		if !ok {
			return
		}
		for i, e := range list {
			p := fmt.Sprintf("%s/Statement[%d]", path, i)
			if fn, arg, ok := intrinsic(e); ok && fn == "Fn::If" {
				branches := asList(arg)
				if len(branches) == 3 {
					cond := asString(branches[0])
					for j, b := range branches[1:] {
						if refTo(b) == "AWS::NoValue" {
							continue
						}
						when := cond
						if j == 1 {
							when = "not " + cond
						}
						out = append(out, statement{path: p, when: when, body: asMap(b)})
					}
					continue
				}
			}
			out = append(out, statement{path: p, body: asMap(e)})
		}
	})
	return out
}

// sortedSet returns the distinct strings of l, sorted.
func sortedSet(l []string) []string {
	l = slices.Clone(l)
	sort.Strings(l)
	return slices.Compact(l)
}

// diff reports what want has that got lacks and the reverse.
func diff(what string, got, want []string) []string {
	got, want = sortedSet(got), sortedSet(want)
	var problems []string
	for _, w := range want {
		if !slices.Contains(got, w) {
			problems = append(problems, fmt.Sprintf("%s: missing %q", what, w))
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			problems = append(problems, fmt.Sprintf("%s: unexpected %q", what, g))
		}
	}
	return problems
}
