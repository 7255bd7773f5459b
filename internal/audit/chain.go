package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"time"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// chainTag starts the canonical encoding of every entry; a new encoding gets a new tag.
const chainTag = "fhirgate-audit-chain-v1"

// HashSize is the size of an entry hash (SHA-256).
const HashSize = sha256.Size

// GenesisHash is the previous hash of the first entry: 32 zero bytes.
var GenesisHash = make([]byte, HashSize)

// EntryHash is SHA-256 over the canonical encoding of e: the chain tag, then every field except
// Hash, in a fixed order, each integer as 8 bytes big-endian and each string or byte string
// prefixed with its length, so that no two different entries encode alike. The previous hash is
// part of the encoding, which is what chains the entries.
func EntryHash(e sqlstore.AuditEntry) []byte {
	h := sha256.New()
	writeCanonical(h, e)
	return h.Sum(nil)
}

func writeCanonical(h hash.Hash, e sqlstore.AuditEntry) {
	var n [8]byte
	putInt := func(v int64) {
		binary.BigEndian.PutUint64(n[:], uint64(v))
		h.Write(n[:])
	}
	putBytes := func(b []byte) {
		putInt(int64(len(b)))
		h.Write(b)
	}
	putString := func(s string) {
		putInt(int64(len(s)))
		h.Write([]byte(s))
	}
	putString(chainTag)
	putInt(e.Seq)
	putString(e.ID)
	putInt(e.Recorded.UnixMicro())
	putString(e.Action)
	putString(e.Outcome)
	putString(e.ClientID)
	putString(e.Subject)
	putString(e.FHIRUser)
	putString(e.SourceIP)
	putString(e.RequestID)
	putInt(int64(len(e.Patients)))
	for _, p := range e.Patients {
		putString(p)
	}
	putBytes(e.PrevHash)
	putBytes(e.Event)
}

// chain links entries onto head: it assigns sequence numbers and previous hashes and computes each
// hash. entries are modified in place.
func chain(head sqlstore.AuditHead, entries []sqlstore.AuditEntry) {
	prev := head.Hash
	if head.Seq == 0 || len(prev) == 0 {
		prev = GenesisHash
	}
	for i := range entries {
		entries[i].Seq = head.Seq + int64(i) + 1
		entries[i].PrevHash = prev
		entries[i].Hash = EntryHash(entries[i])
		prev = entries[i].Hash
	}
}

// entryFromEvent builds the stored row of an event (without sequence and hashes).
func entryFromEvent(e Event, id string, ae []byte) sqlstore.AuditEntry {
	return sqlstore.AuditEntry{
		ID:        id,
		Recorded:  e.Time.UTC().Truncate(time.Microsecond),
		Action:    string(e.Action),
		Outcome:   string(e.Outcome),
		ClientID:  e.ClientID,
		Subject:   e.Subject,
		FHIRUser:  e.FHIRUser,
		SourceIP:  e.SourceIP,
		RequestID: e.RequestID,
		Patients:  e.Patients,
		Event:     ae,
	}
}

func hashEqual(a, b []byte) bool { return len(a) == HashSize && bytes.Equal(a, b) }
