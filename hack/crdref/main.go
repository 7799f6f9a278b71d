// Command crdref writes the CRD reference (docs/crd-reference.md) from the generated CRDs
// in config/crd/bases, so that the reference says exactly what the API server enforces
// and never drifts from it. `make manifests` runs it after controller-gen, and
// `make verify-gen` fails when the committed reference is stale.
//
//	go run ./hack/crdref -crds config/crd/bases -out docs/crd-reference.md
//
// The output depends only on the CRD files: kinds in a fixed order, fields sorted by name.
// A schema keyword the generator does not know is an error, so nothing is left out
// silently.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

func main() {
	crds := flag.String("crds", "config/crd/bases", "folder of the CustomResourceDefinition YAML files")
	out := flag.String("out", "docs/crd-reference.md", "markdown file to write; - for standard output")
	flag.Parse()
	doc, err := generate(*crds)
	if err == nil {
		if *out == "-" {
			_, err = os.Stdout.Write(doc)
		} else {
			err = os.WriteFile(*out, doc, 0o644)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crdref:", err)
		os.Exit(1)
	}
}

// crd is the part of a CustomResourceDefinition that the reference shows. The schema is
// decoded separately and strictly (see schema).
type crd struct {
	Kind string `json:"kind"`
	Spec struct {
		Group string `json:"group"`
		Names struct {
			Kind       string   `json:"kind"`
			Plural     string   `json:"plural"`
			Singular   string   `json:"singular"`
			ShortNames []string `json:"shortNames"`
			Categories []string `json:"categories"`
		} `json:"names"`
		Scope    string `json:"scope"`
		Versions []struct {
			Name    string `json:"name"`
			Served  bool   `json:"served"`
			Storage bool   `json:"storage"`
			Columns []struct {
				Name     string `json:"name"`
				Type     string `json:"type"`
				JSONPath string `json:"jsonPath"`
				Priority int    `json:"priority"`
			} `json:"additionalPrinterColumns"`
			Schema struct {
				OpenAPIV3Schema json.RawMessage `json:"openAPIV3Schema"`
			} `json:"schema"`
			Subresources map[string]json.RawMessage `json:"subresources"`
		} `json:"versions"`
	} `json:"spec"`
}

// schema is the subset of OpenAPI v3 that controller-gen writes for our types. It is
// decoded with unknown fields refused: a keyword missing here must be added (and shown)
// before the reference can be generated.
type schema struct {
	Type        string             `json:"type"`
	Format      string             `json:"format"`
	Description string             `json:"description"`
	Default     json.RawMessage    `json:"default"`
	Enum        []json.RawMessage  `json:"enum"`
	Pattern     string             `json:"pattern"`
	MinLength   *int64             `json:"minLength"`
	MaxLength   *int64             `json:"maxLength"`
	MinItems    *int64             `json:"minItems"`
	MaxItems    *int64             `json:"maxItems"`
	Minimum     *float64           `json:"minimum"`
	Maximum     *float64           `json:"maximum"`
	Properties  map[string]*schema `json:"properties"`
	Items       *schema            `json:"items"`
	Required    []string           `json:"required"`
	ListType    string             `json:"x-kubernetes-list-type"`
	ListMapKeys []string           `json:"x-kubernetes-list-map-keys"`
	Validations []rule             `json:"x-kubernetes-validations"`
}

type rule struct {
	Rule    string `json:"rule"`
	Message string `json:"message"`
}

// kindOrder is the order of the README and of a user's day: the domain, its logins, then
// the policies. Kinds not listed follow in alphabetical order.
var kindOrder = []string{"MailDomain", "SMTPCredential", "DiscoveryPolicy", "TLSDeliveryPolicy"}

type kind struct {
	crd    crd
	schema *schema
}

func generate(dir string) ([]byte, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no CRD files in %s", dir)
	}
	var kinds []kind
	for _, f := range files {
		k, err := load(f)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		kinds = append(kinds, k)
	}
	rank := func(name string) int {
		if i := slices.Index(kindOrder, name); i >= 0 {
			return i
		}
		return len(kindOrder)
	}
	sort.Slice(kinds, func(i, j int) bool {
		a, b := kinds[i].crd.Spec.Names.Kind, kinds[j].crd.Spec.Names.Kind
		if rank(a) != rank(b) {
			return rank(a) < rank(b)
		}
		return a < b
	})

	var w bytes.Buffer
	header(&w, kinds)
	for _, k := range kinds {
		writeKind(&w, k)
	}
	return w.Bytes(), nil
}

func load(path string) (kind, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return kind{}, err
	}
	var c crd
	if err := yaml.Unmarshal(data, &c); err != nil {
		return kind{}, err
	}
	if c.Kind != "CustomResourceDefinition" {
		return kind{}, fmt.Errorf("kind %q is not CustomResourceDefinition", c.Kind)
	}
	if len(c.Spec.Versions) != 1 {
		return kind{}, fmt.Errorf("%d versions: the reference knows how to show one", len(c.Spec.Versions))
	}
	dec := json.NewDecoder(bytes.NewReader(c.Spec.Versions[0].Schema.OpenAPIV3Schema))
	dec.DisallowUnknownFields()
	var s schema
	if err := dec.Decode(&s); err != nil {
		return kind{}, fmt.Errorf("schema: %w", err)
	}
	if s.Properties["spec"] == nil {
		return kind{}, errors.New("schema has no spec")
	}
	return kind{crd: c, schema: &s}, nil
}

func header(w *bytes.Buffer, kinds []kind) {
	w.WriteString("# CRD reference\n\n")
	w.WriteString("<!-- Generated by hack/crdref from config/crd/bases (make manifests). Do not edit. -->\n\n")
	w.WriteString("Every field of the four custom resources, as the API server validates them: type,\n")
	w.WriteString("default, and every validation rule (OpenAPI and CEL). The operator never writes\n")
	w.WriteString("`spec`; it reports in `status`, in Events, and in the Secrets it issues. What the\n")
	w.WriteString("operator checks beyond admission (conflicts, references) is in\n")
	w.WriteString("[operator.md](operator.md#what-is-checked); the conditions and their reasons are in\n")
	w.WriteString("[operating.md](operating.md#conditions-and-reasons).\n\n")
	w.WriteString("This page is generated from the CRDs by `make manifests`; `make verify-gen` fails when\n")
	w.WriteString("it is stale. `kubectl explain <kind>.spec` shows the same descriptions.\n\n")
	w.WriteString("Conventions: a field path ends in `[]` for the items of a list. **Required** fields\n")
	w.WriteString("must be set; a default is applied by the API server when the field is absent.\n")
	w.WriteString("`conditions` are standard `metav1.Condition`s (type, status, reason, message,\n")
	w.WriteString("lastTransitionTime, observedGeneration), a list keyed by `type`.\n\n")
	for _, k := range kinds {
		n := k.crd.Spec.Names.Kind
		fmt.Fprintf(w, "- [%s](#%s)\n", n, strings.ToLower(n))
	}
	w.WriteString("\n")
}

func writeKind(w *bytes.Buffer, k kind) {
	c, v := k.crd, k.crd.Spec.Versions[0]
	n := c.Spec.Names
	fmt.Fprintf(w, "## %s\n\n", n.Kind)
	fmt.Fprintf(w, "%s\n\n", text(k.schema.Description))
	var facts []string
	facts = append(facts, "API version "+code(c.Spec.Group+"/"+v.Name))
	facts = append(facts, "scope "+c.Spec.Scope)
	facts = append(facts, "resource "+code(n.Plural))
	if len(n.ShortNames) > 0 {
		facts = append(facts, "short names "+codes(n.ShortNames))
	}
	if len(n.Categories) > 0 {
		facts = append(facts, "categories "+codes(n.Categories))
	}
	if len(v.Subresources) > 0 {
		facts = append(facts, "subresources "+codes(sortedKeys(v.Subresources)))
	}
	fmt.Fprintf(w, "%s.\n\n", strings.Join(facts, ", "))

	if len(v.Columns) > 0 {
		fmt.Fprintf(w, "`kubectl get %s` columns (priority 1 only with `-o wide`):\n\n", n.Plural)
		w.WriteString("| Column | Type | JSONPath | Priority |\n| --- | --- | --- | --- |\n")
		for _, col := range v.Columns {
			fmt.Fprintf(w, "| %s | %s | %s | %d |\n", cell(col.Name), col.Type, code(col.JSONPath), col.Priority)
		}
		w.WriteString("\n")
	}
	for _, part := range []string{"spec", "status"} {
		s := k.schema.Properties[part]
		if s == nil {
			continue
		}
		fmt.Fprintf(w, "### %s.%s\n\n", n.Kind, part)
		if d := text(s.Description); d != "" {
			fmt.Fprintf(w, "%s\n\n", d)
		}
		if slices.Contains(k.schema.Required, part) {
			fmt.Fprintf(w, "`%s` is required.\n\n", part)
		}
		if len(s.Validations) > 0 {
			fmt.Fprintf(w, "Rules on the whole `%s`:\n\n", part)
			for _, r := range s.Validations {
				fmt.Fprintf(w, "- %s\n  (%s)\n", text(r.Message), code(oneLine(r.Rule)))
			}
			w.WriteString("\n")
		}
		if len(s.Properties) == 0 {
			w.WriteString("No fields.\n\n")
			continue
		}
		w.WriteString("| Field | Type | Description |\n| --- | --- | --- |\n")
		fields(w, part, s)
		w.WriteString("\n")
	}
}

// fields writes one row per property of s, depth first, in name order.
func fields(w *bytes.Buffer, prefix string, s *schema) {
	for _, name := range sortedKeys(s.Properties) {
		p := s.Properties[name]
		path := prefix + "." + name
		fmt.Fprintf(w, "| %s | %s | %s |\n", code(path), typeName(p), details(p, slices.Contains(s.Required, name)))
		switch {
		case isConditions(p):
			// Standard metav1.Conditions: described once in the header.
		case p.Items != nil && len(p.Items.Properties) > 0:
			fields(w, path+"[]", p.Items)
		case len(p.Properties) > 0:
			fields(w, path, p)
		}
	}
}

// isConditions recognises a list of metav1.Condition.
func isConditions(s *schema) bool {
	if s.Type != "array" || s.Items == nil {
		return false
	}
	for _, f := range []string{"type", "status", "reason", "message", "lastTransitionTime"} {
		if s.Items.Properties[f] == nil {
			return false
		}
	}
	return true
}

func typeName(s *schema) string {
	switch {
	case isConditions(s):
		return "[]Condition"
	case s.Type == "array" && s.Items != nil:
		return "[]" + typeName(s.Items)
	case s.Format != "" && s.Type == "integer":
		return s.Format
	case s.Format != "":
		return s.Type + " (" + s.Format + ")"
	case s.Type == "":
		return "any"
	}
	return s.Type
}

// details is the Description cell: required, default, description, then validation.
func details(s *schema, required bool) string {
	var parts []string
	var head []string
	if required {
		head = append(head, "**Required.**")
	}
	if len(s.Default) > 0 {
		head = append(head, "Default: "+code(compactJSON(s.Default))+".")
	}
	if d := text(s.Description); d != "" {
		head = append(head, d)
	}
	if len(head) > 0 {
		parts = append(parts, strings.Join(head, " "))
	}
	if v := validation(s); len(v) > 0 {
		parts = append(parts, "Validation: "+strings.Join(v, "; ")+".")
	}
	for _, r := range s.Validations {
		parts = append(parts, "Rule: "+text(r.Message)+" "+code(oneLine(r.Rule)))
	}
	return cell(strings.Join(parts, "<br>"))
}

// validation lists the OpenAPI constraints of s (not its CEL rules) in words.
func validation(s *schema) []string {
	var v []string
	if len(s.Enum) > 0 {
		vals := make([]string, len(s.Enum))
		for i, e := range s.Enum {
			vals[i] = code(compactJSON(e))
		}
		v = append(v, "one of "+strings.Join(vals, ", "))
	}
	if r := bounds("length", s.MinLength, s.MaxLength); r != "" {
		v = append(v, r)
	}
	if s.Minimum != nil || s.Maximum != nil {
		v = append(v, numberRange(s.Minimum, s.Maximum))
	}
	if s.Pattern != "" {
		v = append(v, "matches "+code(s.Pattern))
	}
	if r := bounds("items", s.MinItems, s.MaxItems); r != "" {
		v = append(v, r)
	}
	switch s.ListType {
	case "set":
		v = append(v, "items are unique (set)")
	case "map":
		v = append(v, "items are unique by "+codes(s.ListMapKeys)+" (map)")
	case "atomic":
		v = append(v, "replaced as a whole (atomic)")
	}
	if s.Items != nil && s.Items.Type != "object" {
		for _, iv := range validation(s.Items) {
			v = append(v, "each item: "+iv)
		}
		for _, r := range s.Items.Validations {
			v = append(v, "each item: "+text(r.Message)+" "+code(oneLine(r.Rule)))
		}
	}
	if s.Items != nil && s.Items.Type == "object" {
		for _, r := range s.Items.Validations {
			v = append(v, "each item: "+text(r.Message)+" "+code(oneLine(r.Rule)))
		}
	}
	return v
}

func bounds(what string, lo, hi *int64) string {
	switch {
	case lo != nil && hi != nil:
		return fmt.Sprintf("%s %d to %d", what, *lo, *hi)
	case lo != nil:
		return fmt.Sprintf("%s at least %d", what, *lo)
	case hi != nil:
		return fmt.Sprintf("%s at most %d", what, *hi)
	}
	return ""
}

func numberRange(lo, hi *float64) string {
	f := func(x float64) string { return strconv.FormatFloat(x, 'f', -1, 64) }
	switch {
	case lo != nil && hi != nil:
		return "from " + f(*lo) + " to " + f(*hi)
	case lo != nil:
		return "at least " + f(*lo)
	}
	return "at most " + f(*hi)
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// text turns a schema description into one markdown paragraph: lines joined, blank lines
// kept as breaks, and the characters markdown would act on escaped.
func text(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	var paras []string
	for p := range strings.SplitSeq(s, "\n\n") {
		paras = append(paras, escape(oneLine(p)))
	}
	return strings.Join(paras, "<br>")
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

var escaper = strings.NewReplacer(`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "<", "&lt;")

func escape(s string) string { return escaper.Replace(s) }

// code is an inline code span that holds any text, backticks included.
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		return fence + " " + s + " " + fence
	}
	return fence + s + fence
}

func codes(list []string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = code(s)
	}
	return strings.Join(out, ", ")
}

// cell makes text safe inside a table row: GitHub ends a cell at any unescaped pipe, even
// inside a code span.
func cell(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\n", " "), "|", `\|`)
}
