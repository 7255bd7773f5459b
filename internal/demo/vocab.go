package demo

// Code systems.
const (
	sysLOINC       = "http://loinc.org"
	sysSNOMED      = "http://snomed.info/sct"
	sysRxNorm      = "http://www.nlm.nih.gov/research/umls/rxnorm"
	sysCVX         = "http://hl7.org/fhir/sid/cvx"
	sysUCUM        = "http://unitsofmeasure.org"
	sysNPI         = "http://hl7.org/fhir/sid/us-npi"
	sysMRN         = "https://fhirgate.example/sid/mrn"
	sysObsCategory = "http://terminology.hl7.org/CodeSystem/observation-category"
	sysConfident   = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
	sysActCode     = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
	sysV20203      = "http://terminology.hl7.org/CodeSystem/v2-0203"
	sysV20074      = "http://terminology.hl7.org/CodeSystem/v2-0074"
	sysOMB         = "urn:oid:2.16.840.1.113883.6.238"
	extRace        = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
	extEthnicity   = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity"
	extBirthSex    = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex"
)

// Security labels. Confidentiality R (restricted) and V (very restricted) come from
// v3-Confidentiality; the sensitivity codes from v3-ActCode's InformationSensitivityPolicy.
const (
	labelR   = "R"
	labelV   = "V"
	labelHIV = "HIV" // HIV/AIDS information sensitivity
	labelPSY = "PSY" // psychiatry information sensitivity
	labelETH = "ETH" // substance abuse information sensitivity
	labelSUD = "SUD" // substance use disorder information sensitivity (42 CFR Part 2)
)

var labelDisplay = map[string]string{
	labelR:   "restricted",
	labelV:   "very restricted",
	labelHIV: "HIV/AIDS information sensitivity",
	labelPSY: "psychiatry information sensitivity",
	labelETH: "substance abuse information sensitivity",
	labelSUD: "substance use disorder information sensitivity",
}

type code struct{ system, code, display string }

// organization is a demo care organization.
type organization struct {
	id, name, kind, city, state, zip, street, phone string
}

var organizations = []organization{
	{"org-springfield-general", "Springfield General Hospital", "prov", "Springfield", "MA", "01103", "759 Chestnut St", "+1-413-555-0100"},
	{"org-riverside-clinic", "Riverside Family Clinic", "prov", "Holyoke", "MA", "01040", "12 Bridge St", "+1-413-555-0140"},
	{"org-lakeside-lab", "Lakeside Medical Laboratory", "prov", "Chicopee", "MA", "01013", "300 Lake Ave", "+1-413-555-0180"},
	{"org-harbor-behavioral", "Harbor Behavioral Health Center", "prov", "Westfield", "MA", "01085", "48 Elm St", "+1-413-555-0160"},
}

// practitioner is a demo clinician; the first is Practitioner/example-smith.
type practitioner struct {
	id, given, family, gender, npi, org string
	specialty                           code
}

var practitioners = []practitioner{
	{"example-smith", "Jane", "Smith", "female", "1234567893", "org-springfield-general", code{sysSNOMED, "419772000", "Family practice"}},
	{"pr-okonkwo", "Chidi", "Okonkwo", "male", "1245319599", "org-springfield-general", code{sysSNOMED, "394579002", "Cardiology"}},
	{"pr-garcia", "Lucia", "Garcia", "female", "1356472581", "org-riverside-clinic", code{sysSNOMED, "419772000", "Family practice"}},
	{"pr-chen", "Wei", "Chen", "male", "1467583692", "org-springfield-general", code{sysSNOMED, "394583002", "Endocrinology"}},
	{"pr-patel", "Anika", "Patel", "female", "1578694703", "org-riverside-clinic", code{sysSNOMED, "394802001", "General medicine"}},
	{"pr-novak", "Tomas", "Novak", "male", "1689705814", "org-harbor-behavioral", code{sysSNOMED, "394587001", "Psychiatry"}},
	{"pr-haddad", "Samira", "Haddad", "female", "1790816925", "org-springfield-general", code{sysSNOMED, "408463005", "Infectious diseases"}},
	{"pr-johansson", "Erik", "Johansson", "male", "1801927036", "org-lakeside-lab", code{sysSNOMED, "394915009", "General pathology"}},
}

var (
	femaleGiven = []string{"Maria", "Aisha", "Emma", "Sofia", "Mei", "Fatima", "Olivia", "Priya", "Hannah", "Yuki",
		"Grace", "Amara", "Elena", "Zoe", "Ingrid", "Leila", "Chloe", "Nadia", "Rosa", "Keiko", "Ava", "Imani"}
	maleGiven = []string{"James", "Mohammed", "Liam", "Carlos", "Hiroshi", "Kwame", "Noah", "Arjun", "Lucas", "Dmitri",
		"Ethan", "Mateo", "Omar", "Samuel", "Jin", "Kofi", "Daniel", "Rafael", "Tariq", "Henrik", "Malik", "Wei"}
	familyNames = []string{"Johnson", "Williams", "Brown", "Nguyen", "Garcia", "Kim", "Okafor", "Rossi", "Kowalski", "Haddad",
		"Martinez", "Singh", "Ivanova", "Tanaka", "Murphy", "O'Brien", "Mensah", "Silva", "Cohen", "Andersson",
		"Lopez", "Chen", "Dubois", "Müller", "Yilmaz", "Patel", "Novak", "Santos", "Walker", "Abebe", "Reyes", "Fischer"}
	streets = []string{"Maple Ave", "Oak St", "Pine Rd", "Cedar Ln", "Elm St", "Washington Blvd", "Lincoln Ave", "Park Pl",
		"River Rd", "Hillside Dr", "Sunset Blvd", "Church St", "Highland Ave", "Mill St", "Spring St"}
	places = []struct{ city, state, zip string }{
		{"Springfield", "MA", "01103"}, {"Holyoke", "MA", "01040"}, {"Chicopee", "MA", "01013"}, {"Westfield", "MA", "01085"},
		{"Northampton", "MA", "01060"}, {"Agawam", "MA", "01001"}, {"Amherst", "MA", "01002"}, {"Hartford", "CT", "06103"},
		{"Enfield", "CT", "06082"}, {"Pittsfield", "MA", "01201"},
	}
	races = []code{
		{sysOMB, "2106-3", "White"}, {sysOMB, "2054-5", "Black or African American"}, {sysOMB, "2028-9", "Asian"},
		{sysOMB, "1002-5", "American Indian or Alaska Native"}, {sysOMB, "2076-8", "Native Hawaiian or Other Pacific Islander"},
	}
	ethnicities = []code{{sysOMB, "2135-2", "Hispanic or Latino"}, {sysOMB, "2186-5", "Not Hispanic or Latino"}}
)

// condition is a problem the generator can give a patient, with its treatment and follow-up.
type condition struct {
	key        string
	code       code
	labels     []string // security labels of the condition and everything about it
	medication code     // RxNorm
	dose       string
	// followUp, when set, is an Observation recorded at each visit about the condition.
	followUp *labTest
	// specialist is the practitioner who treats it (empty: the primary care physician).
	specialist string
	percent    int // the chance, in percent, that a generated patient has it
}

// labTest is a LOINC-coded measurement with a plausible range.
type labTest struct {
	code         code
	unit, ucum   string
	low, high    float64 // reference range; zero high means none
	min, max     float64 // generated values
	decimals     int
	category     string // observation-category code
	valueInteger bool
}

var (
	testHbA1c = labTest{code: code{sysLOINC, "4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"}, unit: "%", ucum: "%",
		low: 4, high: 5.6, min: 4.8, max: 9.5, decimals: 1, category: "laboratory"}
	testGlucose = labTest{code: code{sysLOINC, "2345-7", "Glucose [Mass/volume] in Serum or Plasma"}, unit: "mg/dL", ucum: "mg/dL",
		low: 70, high: 99, min: 72, max: 180, category: "laboratory"}
	testCholesterol = labTest{code: code{sysLOINC, "2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"}, unit: "mg/dL", ucum: "mg/dL",
		low: 0, high: 200, min: 140, max: 260, category: "laboratory"}
	testCreatinine = labTest{code: code{sysLOINC, "2160-0", "Creatinine [Mass/volume] in Serum or Plasma"}, unit: "mg/dL", ucum: "mg/dL",
		low: 0.6, high: 1.2, min: 0.6, max: 1.5, decimals: 2, category: "laboratory"}
	testViralLoad = labTest{code: code{sysLOINC, "20447-9", "HIV 1 RNA [#/volume] (viral load) in Serum or Plasma by NAA with probe detection"},
		unit: "copies/mL", ucum: "{copies}/mL", min: 20, max: 400, category: "laboratory"}
	testPHQ9 = labTest{code: code{sysLOINC, "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"},
		min: 3, max: 19, category: "survey", valueInteger: true}
	testAUDITC = labTest{code: code{sysLOINC, "75626-2", "Total score [AUDIT-C]"}, min: 3, max: 11, category: "survey", valueInteger: true}

	labPanel = []labTest{testHbA1c, testGlucose, testCholesterol, testCreatinine}
)

var conditions = []condition{
	{key: "hypertension", code: code{sysSNOMED, "38341003", "Hypertensive disorder, systemic arterial (disorder)"},
		medication: code{sysRxNorm, "314076", "lisinopril 10 MG Oral Tablet"}, dose: "1 tablet by mouth once daily", percent: 30},
	{key: "diabetes", code: code{sysSNOMED, "44054006", "Diabetes mellitus type 2 (disorder)"},
		medication: code{sysRxNorm, "861007", "metformin hydrochloride 500 MG Oral Tablet"}, dose: "1 tablet by mouth twice daily", specialist: "pr-chen", percent: 15},
	{key: "hyperlipidemia", code: code{sysSNOMED, "55822004", "Hyperlipidemia (disorder)"},
		medication: code{sysRxNorm, "617310", "atorvastatin 20 MG Oral Tablet"}, dose: "1 tablet by mouth at bedtime", percent: 22},
	{key: "asthma", code: code{sysSNOMED, "195967001", "Asthma (disorder)"},
		medication: code{sysRxNorm, "745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler"}, dose: "2 puffs every 4 to 6 hours as needed", percent: 10},
	{key: "afib", code: code{sysSNOMED, "49436004", "Atrial fibrillation (disorder)"},
		medication: code{sysRxNorm, "855332", "warfarin sodium 5 MG Oral Tablet"}, dose: "1 tablet by mouth once daily", specialist: "pr-okonkwo", percent: 5},
	{key: "hypothyroidism", code: code{sysSNOMED, "40930008", "Hypothyroidism (disorder)"},
		medication: code{sysRxNorm, "966247", "levothyroxine sodium 0.05 MG Oral Tablet"}, dose: "1 tablet by mouth every morning", percent: 8},
	// Sensitive conditions: they and everything about them carry security labels.
	{key: "hiv", code: code{sysSNOMED, "86406008", "Human immunodeficiency virus infection (disorder)"}, labels: []string{labelR, labelHIV},
		medication: code{sysRxNorm, "1999665", "bictegravir 50 MG / emtricitabine 200 MG / tenofovir alafenamide 25 MG Oral Tablet"},
		dose:       "1 tablet by mouth once daily", followUp: &testViralLoad, specialist: "pr-haddad", percent: 8},
	{key: "depression", code: code{sysSNOMED, "370143000", "Major depressive disorder (disorder)"}, labels: []string{labelR, labelPSY},
		medication: code{sysRxNorm, "312940", "sertraline 50 MG Oral Tablet"}, dose: "1 tablet by mouth once daily", followUp: &testPHQ9, specialist: "pr-novak", percent: 16},
	{key: "bipolar", code: code{sysSNOMED, "13746004", "Bipolar disorder (disorder)"}, labels: []string{labelV, labelPSY},
		medication: code{sysRxNorm, "197889", "lithium carbonate 300 MG Oral Capsule"}, dose: "1 capsule by mouth twice daily", followUp: &testPHQ9, specialist: "pr-novak", percent: 5},
	{key: "alcohol", code: code{sysSNOMED, "7200002", "Alcoholism (disorder)"}, labels: []string{labelR, labelETH},
		medication: code{sysRxNorm, "197806", "naltrexone hydrochloride 50 MG Oral Tablet"}, dose: "1 tablet by mouth once daily", followUp: &testAUDITC, specialist: "pr-novak", percent: 8},
	{key: "opioid", code: code{sysSNOMED, "5602001", "Opioid abuse (disorder)"}, labels: []string{labelR, labelSUD},
		medication: code{sysRxNorm, "1010600", "buprenorphine 8 MG / naloxone 2 MG Sublingual Film"}, dose: "1 film under the tongue once daily", specialist: "pr-novak", percent: 6},
}

func conditionByKey(key string) condition {
	for _, c := range conditions {
		if c.key == key {
			return c
		}
	}
	panic("demo: no condition " + key)
}

type allergy struct {
	code                  code
	category, criticality string
	reaction              code
	severity              string
}

var allergies = []allergy{
	{code{sysSNOMED, "91936005", "Allergy to penicillin"}, "medication", "high", code{sysSNOMED, "247472004", "Hives"}, "moderate"},
	{code{sysSNOMED, "91935009", "Allergy to peanut"}, "food", "high", code{sysSNOMED, "39579001", "Anaphylaxis"}, "severe"},
	{code{sysSNOMED, "300916003", "Latex allergy"}, "environment", "low", code{sysSNOMED, "271807003", "Eruption of skin"}, "mild"},
	{code{sysSNOMED, "300913006", "Shellfish allergy"}, "food", "high", code{sysSNOMED, "39579001", "Anaphylaxis"}, "severe"},
	{code{sysSNOMED, "294505008", "Allergy to sulfonamide"}, "medication", "low", code{sysSNOMED, "271807003", "Eruption of skin"}, "mild"},
}

var (
	vaccineFlu   = code{sysCVX, "140", "Influenza, seasonal, injectable, preservative free"}
	vaccineCOVID = code{sysCVX, "208", "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose"}
	vaccineTdap  = code{sysCVX, "115", "Tdap"}
	vaccinePPSV  = code{sysCVX, "33", "pneumococcal polysaccharide vaccine, 23 valent"}
	vaccineHepB  = code{sysCVX, "43", "hepatitis B vaccine, adult dosage"}
)

var (
	encounterCheckup  = code{sysSNOMED, "185349003", "Encounter for check up (procedure)"}
	encounterFollowUp = code{sysSNOMED, "390906007", "Follow-up encounter (procedure)"}
	encounterPsych    = code{sysSNOMED, "698314001", "Consultation for treatment (procedure)"}
)
