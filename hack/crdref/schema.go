package main

import (
	"encoding/json"
)

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
