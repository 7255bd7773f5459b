package demo

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// profile is who a patient is; the record is generated from it.
type profile struct {
	r              *rand.Rand
	id             string
	given          []string
	nickname       string
	family         string
	gender         string
	birth          time.Time
	race           *code
	ethnicity      *code
	street, phone  string
	place          struct{ city, state, zip string }
	conditions     []condition
	allergies      []allergy
	org            organization
	pcp            practitioner
	smith          bool // Practitioner/example-smith is on the care team
	visits         int
	heightCm, kg   float64
	sbp, dbp, hr   float64
	maritalCode    string
	maritalDisplay string
}

func practitionerByID(id string) practitioner {
	for _, p := range practitioners {
		if p.id == id {
			return p
		}
	}
	panic("demo: no practitioner " + id)
}

func orgByID(id string) organization {
	for _, o := range organizations {
		if o.id == id {
			return o
		}
	}
	panic("demo: no organization " + id)
}

// alice is Patient/example-alice: an adult woman with a long record (vitals and labs over
// time) that includes restricted HIV and psychiatric information.
func alice(r *rand.Rand) *profile {
	p := &profile{r: r, id: AlicePatientID, given: []string{"Alice", "Marie"}, family: "Hartley", gender: "female",
		birth: time.Date(1984, time.March, 12, 0, 0, 0, 0, time.UTC), race: &races[0], ethnicity: &ethnicities[1],
		street: "42 Maple Ave", phone: "+1-413-555-0142", org: orgByID("org-springfield-general"),
		pcp: practitionerByID(SmithPractitioner), smith: true, visits: 8, heightCm: 167, kg: 71,
		sbp: 138, dbp: 88, hr: 74, maritalCode: "M", maritalDisplay: "Married"}
	p.place.city, p.place.state, p.place.zip = "Springfield", "MA", "01103"
	for _, k := range []string{"hypertension", "diabetes", "hiv", "depression"} {
		p.conditions = append(p.conditions, conditionByKey(k))
	}
	p.allergies = []allergy{allergies[0]}
	return p
}

// bob is Patient/example-bob: an older man with cardiovascular problems and a restricted
// substance-abuse diagnosis.
func bob(r *rand.Rand) *profile {
	p := &profile{r: r, id: BobPatientID, given: []string{"Robert", "James"}, nickname: "Bob", family: "Okafor", gender: "male",
		birth: time.Date(1957, time.September, 30, 0, 0, 0, 0, time.UTC), race: &races[1], ethnicity: &ethnicities[1],
		street: "7 Oak St", phone: "+1-413-555-0177", org: orgByID("org-riverside-clinic"),
		pcp: practitionerByID("pr-garcia"), smith: true, visits: 5, heightCm: 181, kg: 94,
		sbp: 142, dbp: 86, hr: 68, maritalCode: "W", maritalDisplay: "Widowed"}
	p.place.city, p.place.state, p.place.zip = "Holyoke", "MA", "01040"
	for _, k := range []string{"hypertension", "hyperlipidemia", "afib", "alcohol"} {
		p.conditions = append(p.conditions, conditionByKey(k))
	}
	p.allergies = []allergy{allergies[3]}
	return p
}

var maritalStatuses = [][2]string{{"M", "Married"}, {"S", "Never Married"}, {"D", "Divorced"}, {"W", "Widowed"}}

// randomProfile is generated patient number i.
func randomProfile(r *rand.Rand, i int) *profile {
	p := &profile{r: r, id: fmt.Sprintf("p-%06d", i)}
	if r.IntN(2) == 0 {
		p.gender = "female"
		p.given = []string{pick(r, femaleGiven)}
		p.heightCm, p.kg = 152+r.Float64()*23, 52+r.Float64()*40
	} else {
		p.gender = "male"
		p.given = []string{pick(r, maleGiven)}
		p.heightCm, p.kg = 165+r.Float64()*27, 62+r.Float64()*45
	}
	if r.IntN(3) == 0 {
		if p.gender == "female" {
			p.given = append(p.given, pick(r, femaleGiven))
		} else {
			p.given = append(p.given, pick(r, maleGiven))
		}
	}
	p.family = pick(r, familyNames)
	if r.IntN(8) == 0 {
		p.family += "-" + pick(r, familyNames)
	}
	p.birth = time.Date(1940+r.IntN(66), time.Month(1+r.IntN(12)), 1+r.IntN(28), 0, 0, 0, 0, time.UTC)
	if r.IntN(10) < 6 {
		p.race, p.ethnicity = &races[r.IntN(len(races))], &ethnicities[r.IntN(len(ethnicities))]
	}
	p.place = places[r.IntN(len(places))]
	p.street = fmt.Sprintf("%d %s", 1+r.IntN(980), pick(r, streets))
	p.phone = fmt.Sprintf("+1-413-555-%04d", 200+r.IntN(9800))
	p.org = organizations[r.IntN(2)] // the hospital or the clinic
	p.pcp = practitionerByID(pick(r, []string{SmithPractitioner, "pr-garcia", "pr-patel"}))
	p.smith = p.pcp.id == SmithPractitioner || i%3 == 0
	p.visits = 3 + r.IntN(3)
	p.sbp, p.dbp, p.hr = 112+r.Float64()*20, 70+r.Float64()*12, 60+r.Float64()*28
	for _, c := range conditions {
		if r.IntN(100) < c.percent {
			p.conditions = append(p.conditions, c)
		}
	}
	if r.IntN(10) < 4 {
		p.allergies = append(p.allergies, pick(r, allergies))
	}
	ms := pick(r, maritalStatuses)
	p.maritalCode, p.maritalDisplay = ms[0], ms[1]
	return p
}

func (p *profile) has(key string) bool {
	for _, c := range p.conditions {
		if c.key == key {
			return true
		}
	}
	return false
}

func (p *profile) name() string { return strings.Join(p.given, " ") + " " + p.family }

// record is the per-patient id counters.
type record struct {
	p    *profile
	next map[string]int
}

func (rec *record) id(kind string) string {
	rec.next[kind]++
	return fmt.Sprintf("%s-%s-%d", rec.p.id, kind, rec.next[kind])
}

// visit is one encounter of the timeline.
type visit struct {
	id    string
	start time.Time
	pr    practitioner
}

// patient generates one patient and its whole record.
func (g *generator) patient(p *profile) error {
	r := p.r
	rec := &record{p: p, next: map[string]int{}}
	if err := g.put(g.patientResource(p)); err != nil {
		return err
	}

	// The timeline: visits spread over the last three years, the last one within a month.
	span := 3 * 365 * 24 * time.Hour
	visits := make([]visit, p.visits)
	for k := range visits {
		back := span - time.Duration(k)*span/time.Duration(p.visits)
		start := g.now.Add(-back).Add(time.Duration(r.IntN(20*24)) * time.Hour).Truncate(24 * time.Hour)
		start = start.Add(time.Duration(8*60+r.IntN(9*60)) * time.Minute)
		if !start.Before(g.now) {
			start = g.now.Add(-26 * time.Hour)
		}
		visits[k] = visit{start: start, pr: p.pcp}
	}

	var condRefs []any
	conditionAt := make([]int, len(p.conditions)) // the visit each condition was diagnosed at
	for ci := range p.conditions {
		conditionAt[ci] = r.IntN(max(1, p.visits-1))
	}
	hba1c := 7.6 + r.Float64()*1.5
	chol := 150 + r.Float64()*45
	if p.has("hyperlipidemia") {
		chol = 215 + r.Float64()*40
	}
	labVisit := 0
	for k := range visits {
		v := &visits[k]
		v.id = rec.id("enc")
		typ := encounterFollowUp
		if k == 0 {
			typ = encounterCheckup
		}
		if err := g.put(g.encounter(p, v.id, typ, v.start, v.pr, p.org, nil, nil)); err != nil {
			return err
		}
		if err := g.vitals(p, rec, v); err != nil {
			return err
		}
		if k == 0 || k == len(visits)-1 || (k%3 == 0 && p.visits > 6) {
			if err := g.labs(p, rec, v, labVisit, &hba1c, &chol); err != nil {
				return err
			}
			labVisit++
		}
		for ci, c := range p.conditions {
			if conditionAt[ci] != k {
				continue
			}
			condID := rec.id("cond")
			condRefs = append(condRefs, ref("Condition", condID))
			if err := g.put(g.condition(p, c, condID, v)); err != nil {
				return err
			}
			if err := g.put(g.medicationRequest(p, c, rec.id("med"), condID, v)); err != nil {
				return err
			}
			if c.specialist != "" && len(c.labels) > 0 {
				if err := g.specialistVisits(p, rec, c, condID, v.start); err != nil {
					return err
				}
			}
		}
	}
	for _, a := range p.allergies {
		if err := g.put(g.allergy(p, a, rec.id("allergy"), visits[0])); err != nil {
			return err
		}
	}
	if err := g.immunizations(p, rec, visits); err != nil {
		return err
	}
	if err := g.put(g.careTeam(p, rec.id("careteam"), visits[0].start)); err != nil {
		return err
	}
	targets := append([]any{ref("Patient", p.id)}, condRefs...)
	return g.put(obj{
		"resourceType": "Provenance",
		"id":           rec.id("prov"),
		"target":       targets,
		"recorded":     instant(visits[len(visits)-1].start.Add(2 * time.Hour)),
		"activity":     conceptOf("http://terminology.hl7.org/CodeSystem/v3-DataOperation", "CREATE", "create"),
		"agent": []any{obj{
			"type":       conceptOf("http://terminology.hl7.org/CodeSystem/provenance-participant-type", "author", "Author"),
			"who":        refDisplay("Practitioner", p.pcp.id, "Dr. "+p.pcp.given+" "+p.pcp.family),
			"onBehalfOf": ref("Organization", p.org.id),
		}},
	})
}

func (g *generator) patientResource(p *profile) obj {
	r := p.r
	names := []any{obj{"use": "official", "family": p.family, "given": toAny(p.given)}}
	if p.nickname != "" {
		names = append(names, obj{"use": "nickname", "given": []any{p.nickname}})
	}
	email := strings.ToLower(p.given[0]+"."+strings.ReplaceAll(strings.ReplaceAll(p.family, "'", ""), "ü", "ue")) + "@example.com"
	res := obj{
		"resourceType": "Patient",
		"id":           p.id,
		"identifier": []any{obj{
			"use":      "usual",
			"type":     obj{"coding": []any{obj{"system": sysV20203, "code": "MR", "display": "Medical record number"}}, "text": "MRN"},
			"system":   sysMRN,
			"value":    fmt.Sprintf("MRN%07d", 1000000+r.IntN(9000000)),
			"assigner": refDisplay("Organization", p.org.id, p.org.name),
		}},
		"active": true,
		"name":   names,
		"telecom": []any{
			obj{"system": "phone", "value": p.phone, "use": pick(r, []string{"home", "mobile"})},
			obj{"system": "email", "value": email},
		},
		"gender":    p.gender,
		"birthDate": date(p.birth),
		"address": []any{obj{"use": "home", "line": []any{p.street}, "city": p.place.city, "state": p.place.state,
			"postalCode": p.place.zip, "country": "US"}},
		"maritalStatus":        conceptOf("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", p.maritalCode, p.maritalDisplay),
		"communication":        []any{obj{"language": conceptOf("urn:ietf:bcp:47", "en-US", "English (United States)"), "preferred": true}},
		"generalPractitioner":  []any{ref("Practitioner", p.pcp.id)},
		"managingOrganization": ref("Organization", p.org.id),
	}
	var ext []any
	if p.race != nil {
		ext = append(ext, obj{"url": extRace, "extension": []any{
			obj{"url": "ombCategory", "valueCoding": coding(*p.race)},
			obj{"url": "text", "valueString": p.race.display},
		}})
	}
	if p.ethnicity != nil {
		ext = append(ext, obj{"url": extEthnicity, "extension": []any{
			obj{"url": "ombCategory", "valueCoding": coding(*p.ethnicity)},
			obj{"url": "text", "valueString": p.ethnicity.display},
		}})
	}
	ext = append(ext, obj{"url": extBirthSex, "valueCode": strings.ToUpper(p.gender[:1])})
	res["extension"] = ext
	return res
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func (g *generator) encounter(p *profile, id string, typ code, start time.Time, pr practitioner, org organization, reason []any, labels []string) obj {
	res := obj{
		"resourceType": "Encounter",
		"id":           id,
		"status":       "finished",
		"class":        obj{"system": sysActCode, "code": "AMB", "display": "ambulatory"},
		"type":         []any{concept(typ)},
		"subject":      refDisplay("Patient", p.id, p.name()),
		"participant": []any{obj{
			"type":       []any{conceptOf("http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "PPRF", "primary performer")},
			"individual": refDisplay("Practitioner", pr.id, "Dr. "+pr.given+" "+pr.family),
		}},
		"period":          obj{"start": dateTime(start), "end": dateTime(start.Add(time.Duration(20+p.r.IntN(40)) * time.Minute))},
		"serviceProvider": ref("Organization", org.id),
	}
	if reason != nil {
		res["reasonReference"] = reason
	}
	return setMeta(res, labels)
}

func category(c string) []any {
	display := map[string]string{"vital-signs": "Vital Signs", "laboratory": "Laboratory", "survey": "Survey"}[c]
	return []any{conceptOf(sysObsCategory, c, display)}
}

// observation is the common part of every Observation.
func (g *generator) observation(p *profile, id string, cat string, c code, v *visit, labels []string) obj {
	return setMeta(obj{
		"resourceType":      "Observation",
		"id":                id,
		"status":            "final",
		"category":          category(cat),
		"code":              concept(c),
		"subject":           ref("Patient", p.id),
		"encounter":         ref("Encounter", v.id),
		"effectiveDateTime": dateTime(v.start.Add(10 * time.Minute)),
		"issued":            instant(v.start.Add(15 * time.Minute)),
		"performer":         []any{ref("Practitioner", v.pr.id)},
	}, labels)
}

func (g *generator) vitals(p *profile, rec *record, v *visit) error {
	r := p.r
	noise := func(x float64) float64 { return x + (r.Float64()*2-1)*x*0.04 }
	sbp, dbp := noise(p.sbp), noise(p.dbp)
	p.kg += (r.Float64()*2 - 1) * 1.2
	bmi := p.kg / (p.heightCm / 100 * p.heightCm / 100)

	bp := g.observation(p, rec.id("obs"), "vital-signs", code{sysLOINC, "85354-9", "Blood pressure panel with all children optional"}, v, nil)
	bp["component"] = []any{
		obj{"code": concept(code{sysLOINC, "8480-6", "Systolic blood pressure"}), "valueQuantity": quantity(round(sbp, 0), "mmHg", "mm[Hg]")},
		obj{"code": concept(code{sysLOINC, "8462-4", "Diastolic blood pressure"}), "valueQuantity": quantity(round(dbp, 0), "mmHg", "mm[Hg]")},
	}
	list := []obj{bp}
	add := func(c code, value float64, unit, ucum string) {
		o := g.observation(p, rec.id("obs"), "vital-signs", c, v, nil)
		o["valueQuantity"] = quantity(value, unit, ucum)
		list = append(list, o)
	}
	add(code{sysLOINC, "8867-4", "Heart rate"}, round(noise(p.hr), 0), "beats/minute", "/min")
	add(code{sysLOINC, "29463-7", "Body weight"}, round(p.kg, 1), "kg", "kg")
	add(code{sysLOINC, "8302-2", "Body height"}, round(p.heightCm, 1), "cm", "cm")
	add(code{sysLOINC, "39156-5", "Body mass index (BMI) [Ratio]"}, round(bmi, 1), "kg/m2", "kg/m2")
	add(code{sysLOINC, "8310-5", "Body temperature"}, round(36.4+r.Float64()*0.8, 1), "Cel", "Cel")
	for _, o := range list {
		if err := g.put(o); err != nil {
			return err
		}
	}
	return nil
}

// labResult is one laboratory or survey Observation with its value, range and interpretation.
func (g *generator) labResult(p *profile, id string, t labTest, value float64, v *visit, labels []string) obj {
	o := g.observation(p, id, t.category, t.code, v, labels)
	value = round(value, t.decimals)
	if t.valueInteger {
		o["valueInteger"] = int(value)
		return o
	}
	o["valueQuantity"] = quantity(value, t.unit, t.ucum)
	if t.high > 0 {
		rr := obj{"high": quantity(t.high, t.unit, t.ucum)}
		if t.low > 0 {
			rr["low"] = quantity(t.low, t.unit, t.ucum)
		}
		o["referenceRange"] = []any{rr}
		interp := code{"http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "N", "Normal"}
		switch {
		case value > t.high:
			interp = code{interp.system, "H", "High"}
		case value < t.low:
			interp = code{interp.system, "L", "Low"}
		}
		o["interpretation"] = []any{concept(interp)}
	}
	return o
}

func (g *generator) labs(p *profile, rec *record, v *visit, n int, hba1c, chol *float64) error {
	r := p.r
	var results []any
	var list []obj
	for _, t := range labPanel {
		var value float64
		switch t.code.code {
		case testHbA1c.code.code:
			if p.has("diabetes") {
				value = max(6.2, *hba1c-0.35*float64(n))
			} else {
				value = 4.8 + r.Float64()*0.8
			}
		case testGlucose.code.code:
			if p.has("diabetes") {
				value = 125 + r.Float64()*50
			} else {
				value = 74 + r.Float64()*24
			}
		case testCholesterol.code.code:
			value = *chol - float64(n)*6 + (r.Float64()*2-1)*8
		default:
			value = t.min + r.Float64()*(t.max-t.min)*0.6
		}
		id := rec.id("obs")
		results = append(results, ref("Observation", id))
		list = append(list, g.labResult(p, id, t, value, v, nil))
	}
	for _, o := range list {
		if err := g.put(o); err != nil {
			return err
		}
	}
	lab := practitionerByID("pr-johansson")
	return g.put(obj{
		"resourceType":       "DiagnosticReport",
		"id":                 rec.id("report"),
		"status":             "final",
		"category":           []any{conceptOf(sysV20074, "LAB", "Laboratory")},
		"code":               concept(code{sysLOINC, "24323-8", "Comprehensive metabolic 2000 panel - Serum or Plasma"}),
		"subject":            ref("Patient", p.id),
		"encounter":          ref("Encounter", v.id),
		"effectiveDateTime":  dateTime(v.start.Add(10 * time.Minute)),
		"issued":             instant(v.start.Add(26 * time.Hour)),
		"performer":          []any{refDisplay("Organization", "org-lakeside-lab", "Lakeside Medical Laboratory")},
		"resultsInterpreter": []any{ref("Practitioner", lab.id)},
		"result":             results,
	})
}

// specialistVisits are three visits to the specialist who treats a sensitive condition, each
// with its follow-up measurement; all carry the condition's labels.
func (g *generator) specialistVisits(p *profile, rec *record, c condition, condID string, after time.Time) error {
	pr := practitionerByID(c.specialist)
	org := orgByID(pr.org)
	gap := g.now.Sub(after) / 4
	for k := range 3 {
		start := after.Add(time.Duration(k+1) * gap).Truncate(24 * time.Hour).Add(time.Duration(9*60+p.r.IntN(7*60)) * time.Minute)
		if !start.Before(g.now) {
			start = g.now.Add(-(time.Duration(k) + 2) * 24 * time.Hour)
		}
		v := &visit{id: rec.id("enc"), start: start, pr: pr}
		typ := encounterFollowUp
		if c.key == "depression" || c.key == "bipolar" || c.key == "alcohol" || c.key == "opioid" {
			typ = encounterPsych
		}
		if err := g.put(g.encounter(p, v.id, typ, v.start, pr, org, []any{ref("Condition", condID)}, c.labels)); err != nil {
			return err
		}
		if c.followUp == nil {
			continue
		}
		t := *c.followUp
		value := t.max - (t.max-t.min)*float64(k)/3 - p.r.Float64()*(t.max-t.min)*0.1
		if err := g.put(g.labResult(p, rec.id("obs"), t, value, v, c.labels)); err != nil {
			return err
		}
	}
	return nil
}

func (g *generator) condition(p *profile, c condition, id string, v *visit) obj {
	onset := v.start.AddDate(0, -(1 + p.r.IntN(30)), 0)
	if onset.Before(p.birth) {
		onset = v.start
	}
	return setMeta(obj{
		"resourceType":       "Condition",
		"id":                 id,
		"clinicalStatus":     conceptOf("http://terminology.hl7.org/CodeSystem/condition-clinical", "active", "Active"),
		"verificationStatus": conceptOf("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
		"category":           []any{conceptOf("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item", "Problem List Item")},
		"code":               concept(c.code),
		"subject":            ref("Patient", p.id),
		"encounter":          ref("Encounter", v.id),
		"onsetDateTime":      date(onset),
		"recordedDate":       dateTime(v.start.Add(25 * time.Minute)),
		"recorder":           ref("Practitioner", v.pr.id),
	}, c.labels)
}

func (g *generator) medicationRequest(p *profile, c condition, id, condID string, v *visit) obj {
	requester := v.pr.id
	if c.specialist != "" {
		requester = c.specialist
	}
	return setMeta(obj{
		"resourceType":              "MedicationRequest",
		"id":                        id,
		"status":                    "active",
		"intent":                    "order",
		"medicationCodeableConcept": concept(c.medication),
		"subject":                   ref("Patient", p.id),
		"encounter":                 ref("Encounter", v.id),
		"authoredOn":                dateTime(v.start.Add(30 * time.Minute)),
		"requester":                 ref("Practitioner", requester),
		"reasonReference":           []any{ref("Condition", condID)},
		"dosageInstruction":         []any{obj{"sequence": 1, "text": c.dose}},
		"dispenseRequest": obj{
			"numberOfRepeatsAllowed": 3,
			"quantity":               obj{"value": 30, "unit": "each", "system": sysUCUM, "code": "{each}"},
			"expectedSupplyDuration": obj{"value": 30, "unit": "days", "system": sysUCUM, "code": "d"},
		},
	}, c.labels)
}

func (g *generator) allergy(p *profile, a allergy, id string, v visit) obj {
	return obj{
		"resourceType":       "AllergyIntolerance",
		"id":                 id,
		"clinicalStatus":     conceptOf("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"),
		"verificationStatus": conceptOf("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"),
		"type":               "allergy",
		"category":           []any{a.category},
		"criticality":        a.criticality,
		"code":               concept(a.code),
		"patient":            ref("Patient", p.id),
		"recordedDate":       dateTime(v.start.Add(5 * time.Minute)),
		"recorder":           ref("Practitioner", v.pr.id),
		"reaction":           []any{obj{"manifestation": []any{concept(a.reaction)}, "severity": a.severity}},
	}
}

func (g *generator) immunizations(p *profile, rec *record, visits []visit) error {
	r := p.r
	type shot struct {
		vaccine code
		at      time.Time
	}
	var shots []shot
	for y := 1; y <= 3; y++ { // a flu shot each autumn
		autumn := time.Date(g.now.Year()-y, time.October, 1+r.IntN(28), 10, 0, 0, 0, time.UTC)
		if autumn.Before(g.now) && r.IntN(4) != 0 {
			shots = append(shots, shot{vaccineFlu, autumn})
		}
	}
	shots = append(shots, shot{vaccineCOVID, time.Date(2021, time.Month(3+r.IntN(6)), 1+r.IntN(28), 11, 0, 0, 0, time.UTC)})
	if r.IntN(2) == 0 {
		shots = append(shots, shot{vaccineTdap, visits[0].start})
	}
	if age := g.now.Year() - p.birth.Year(); age >= 65 {
		shots = append(shots, shot{vaccinePPSV, visits[len(visits)-1].start})
	}
	if r.IntN(5) == 0 {
		shots = append(shots, shot{vaccineHepB, visits[0].start.AddDate(-2, 0, 0)})
	}
	for _, s := range shots {
		if s.at.Before(p.birth) {
			continue
		}
		err := g.put(obj{
			"resourceType":       "Immunization",
			"id":                 rec.id("imm"),
			"status":             "completed",
			"vaccineCode":        concept(s.vaccine),
			"patient":            ref("Patient", p.id),
			"occurrenceDateTime": dateTime(s.at),
			"primarySource":      true,
			"lotNumber":          fmt.Sprintf("LOT%05d", r.IntN(100000)),
			"performer":          []any{obj{"actor": ref("Practitioner", p.pcp.id)}},
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (g *generator) careTeam(p *profile, id string, start time.Time) obj {
	member := func(pr practitioner, role code) obj {
		return obj{"role": []any{concept(role)}, "member": refDisplay("Practitioner", pr.id, "Dr. "+pr.given+" "+pr.family)}
	}
	pcpRole := code{sysSNOMED, "446050000", "Primary care physician"}
	participants := []any{member(p.pcp, pcpRole)}
	seen := map[string]bool{p.pcp.id: true}
	if p.smith && !seen[SmithPractitioner] {
		participants = append(participants, member(practitionerByID(SmithPractitioner), code{sysSNOMED, "158965000", "Medical practitioner"}))
		seen[SmithPractitioner] = true
	}
	for _, c := range p.conditions {
		if c.specialist != "" && !seen[c.specialist] {
			pr := practitionerByID(c.specialist)
			participants = append(participants, member(pr, code{sysSNOMED, "309295000", "Physician specialist"}))
			seen[c.specialist] = true
		}
	}
	participants = append(participants, obj{
		"role":   []any{concept(code{sysSNOMED, "116154003", "Patient"})},
		"member": ref("Patient", p.id),
	})
	return obj{
		"resourceType":         "CareTeam",
		"id":                   id,
		"status":               "active",
		"name":                 "Care team of " + p.name(),
		"subject":              ref("Patient", p.id),
		"period":               obj{"start": date(start)},
		"participant":          participants,
		"managingOrganization": []any{ref("Organization", p.org.id)},
	}
}

// shared makes the organizations, practitioners and practitioner roles.
func (g *generator) shared() error {
	for _, o := range organizations {
		err := g.put(obj{
			"resourceType": "Organization",
			"id":           o.id,
			"identifier":   []any{obj{"system": "https://fhirgate.example/sid/organization", "value": o.id}},
			"active":       true,
			"type":         []any{conceptOf("http://terminology.hl7.org/CodeSystem/organization-type", o.kind, "Healthcare Provider")},
			"name":         o.name,
			"telecom":      []any{obj{"system": "phone", "value": o.phone, "use": "work"}},
			"address": []any{obj{"use": "work", "line": []any{o.street}, "city": o.city, "state": o.state,
				"postalCode": o.zip, "country": "US"}},
		})
		if err != nil {
			return err
		}
	}
	for _, pr := range practitioners {
		err := g.put(obj{
			"resourceType": "Practitioner",
			"id":           pr.id,
			"identifier":   []any{obj{"system": sysNPI, "value": pr.npi}},
			"active":       true,
			"name":         []any{obj{"use": "official", "family": pr.family, "given": []any{pr.given}, "prefix": []any{"Dr."}}},
			"telecom": []any{obj{"system": "email", "use": "work",
				"value": strings.ToLower(pr.given+"."+pr.family) + "@" + strings.TrimPrefix(pr.org, "org-") + ".example.org"}},
			"gender":        pr.gender,
			"qualification": []any{obj{"code": conceptOf("http://terminology.hl7.org/CodeSystem/v2-0360|2.7", "MD", "Doctor of Medicine")}},
		})
		if err != nil {
			return err
		}
		org := orgByID(pr.org)
		err = g.put(obj{
			"resourceType": "PractitionerRole",
			"id":           "role-" + pr.id,
			"active":       true,
			"practitioner": refDisplay("Practitioner", pr.id, "Dr. "+pr.given+" "+pr.family),
			"organization": refDisplay("Organization", org.id, org.name),
			"code":         []any{conceptOf("http://terminology.hl7.org/CodeSystem/practitioner-role", "doctor", "Doctor")},
			"specialty":    []any{concept(pr.specialty)},
		})
		if err != nil {
			return err
		}
	}
	return nil
}
