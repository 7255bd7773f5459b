package policy

import (
	"github.com/fhirgate/fhirgate/internal/authn"
	"github.com/fhirgate/fhirgate/internal/fhir/search"
	"github.com/fhirgate/fhirgate/internal/smart"
)

// Interaction is a FHIR RESTful interaction, as the FHIR API recognised it from the request.
type Interaction string

// The interactions the engine models. Batch and transaction are not among them: the FHIR API
// evaluates each entry as its own Input (SMART: "validate each inner request").
const (
	Read              Interaction = "read"               // GET [type]/[id]
	VRead             Interaction = "vread"              // GET [type]/[id]/_history/[vid]
	HistoryInstance   Interaction = "history-instance"   // GET [type]/[id]/_history
	HistoryType       Interaction = "history-type"       // GET [type]/_history
	HistorySystem     Interaction = "history-system"     // GET /_history
	SearchType        Interaction = "search-type"        // GET|POST [type]?..., [type]/_search
	SearchSystem      Interaction = "search-system"      // GET /?_type=...
	SearchCompartment Interaction = "search-compartment" // GET Patient/[id]/[type]?...
	Create            Interaction = "create"             // POST [type]
	Update            Interaction = "update"             // PUT [type]/[id] (also when it creates)
	Patch             Interaction = "patch"              // PATCH [type]/[id]
	Delete            Interaction = "delete"             // DELETE [type]/[id]
	Operation         Interaction = "operation"          // [type]/[id]/$name, [type]/$name, /$name
	Capabilities      Interaction = "capabilities"       // GET /metadata
)

// interactionPerms is the SMART v2 permission each interaction needs (SMART App Launch 2.x,
// "Scopes for requesting clinical data": c = create; r = read, vread, instance history; u =
// update, patch; d = delete; s = type and system search and history).
var interactionPerms = map[Interaction]smart.Perms{
	Read:              smart.PermRead,
	VRead:             smart.PermRead,
	HistoryInstance:   smart.PermRead,
	SearchType:        smart.PermSearch,
	SearchSystem:      smart.PermSearch,
	SearchCompartment: smart.PermSearch,
	HistoryType:       smart.PermSearch,
	HistorySystem:     smart.PermSearch,
	Create:            smart.PermCreate,
	Update:            smart.PermUpdate,
	Patch:             smart.PermUpdate,
	Delete:            smart.PermDelete,
}

// PermsFor is the permission an interaction needs (0 for capabilities and operations, which
// have rules of their own).
func PermsFor(i Interaction) smart.Perms { return interactionPerms[i] }

// Input is one request to decide.
type Input struct {
	// Principal is the verified token; nil when the request has none.
	Principal *authn.Principal
	// Interaction is what is asked.
	Interaction Interaction
	// Type is the resource type of the URL; empty for system-level interactions.
	Type string
	// ID is the resource id of instance-level interactions.
	ID string
	// Operation is the operation name with its '$' ("$everything") for Interaction Operation.
	Operation string
	// Query is the parsed search of search interactions. For SearchCompartment its
	// Compartment is set; for SearchSystem its Types are the _type list (empty means every type).
	Query *search.Query
	// Resource is the body the client sent: for create, for update, and for patch the body
	// after the patch is applied. The FHIR API may also pass the stored body of a read here to
	// have it checked at once (it must otherwise pass it through Decision.Filter).
	Resource []byte
	// Current is the stored body before an update, patch or delete; nil when there is none.
	Current []byte
}
