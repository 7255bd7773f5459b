package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

// ChainReader is what Verify reads; *sqlstore.Store implements it.
type ChainReader interface {
	ScanAudit(ctx context.Context, after int64, fn func(sqlstore.AuditEntry) error) error
	ScanAuditPatients(ctx context.Context, fn func(seq int64, patient string) error) error
	ScanAuditAgents(ctx context.Context, fn func(seq int64, agent string) error) error
	ListAuditCheckpoints(ctx context.Context) ([]sqlstore.AuditCheckpoint, error)
}

var _ ChainReader = (*sqlstore.Store)(nil)

// ProblemKind classifies a verification failure.
type ProblemKind string

// The kinds of problems Verify reports.
const (
	// ProblemAltered: the entry's content does not match its hash.
	ProblemAltered ProblemKind = "altered"
	// ProblemRehashed: the entry's hash was recomputed after a change, so the next entry no
	// longer links to it.
	ProblemRehashed ProblemKind = "altered-rehashed"
	// ProblemDeleted: the entry is missing.
	ProblemDeleted ProblemKind = "deleted"
	// ProblemInserted: the entry was not in the original chain.
	ProblemInserted ProblemKind = "inserted"
	// ProblemReordered: the entry is out of its original position.
	ProblemReordered ProblemKind = "reordered"
	// ProblemRewritten: the chain is internally consistent but disagrees with a signed
	// checkpoint: entries up to the checkpoint were rewritten and re-hashed.
	ProblemRewritten ProblemKind = "rewritten"
	// ProblemTruncated: entries a checkpoint covers are gone from the end.
	ProblemTruncated ProblemKind = "truncated"
	// ProblemCheckpoint: a checkpoint's signature or payload is invalid.
	ProblemCheckpoint ProblemKind = "bad-checkpoint"
	// ProblemIndex: the patient index disagrees with the entries.
	ProblemIndex ProblemKind = "index"
)

// Problem is one finding, located at an entry sequence number.
type Problem struct {
	Seq    int64       `json:"seq"`
	Kind   ProblemKind `json:"kind"`
	Detail string      `json:"detail"`
}

func (p Problem) String() string {
	return fmt.Sprintf("entry %d: %s: %s", p.Seq, p.Kind, p.Detail)
}

// Report is the result of Verify.
type Report struct {
	// Entries is how many entries were read; Head the last entry's seq and hash.
	Entries  int64  `json:"entries"`
	HeadSeq  int64  `json:"head_seq"`
	HeadHash string `json:"head_hash"`
	// Checkpoints counts the checkpoints; Signed those whose signature verified; Unverified
	// those whose key was unavailable or that were not checked (no verifier).
	Checkpoints int `json:"checkpoints"`
	Signed      int `json:"signed"`
	Unverified  int `json:"unverified"`
	// LastSignedSeq is the highest sequence covered by a verified checkpoint; entries after it
	// are chained but not yet vouched for by a signature.
	LastSignedSeq int64 `json:"last_signed_seq"`
	// Problems are the findings in chain order; the first names the first bad entry.
	Problems []Problem `json:"problems,omitempty"`
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

// FirstBad returns the first problem, if any.
func (r *Report) FirstBad() (Problem, bool) {
	if len(r.Problems) == 0 {
		return Problem{}, false
	}
	return r.Problems[0], true
}

// maxProblems bounds the findings reported; verification goes on resynchronising after each.
const maxProblems = 100

// window is how many recent entries Verify remembers to tell insertions and reorderings from
// alterations.
const window = 1024

type seenEntry struct {
	seq  int64
	hash []byte
}

// Verify reads the whole chain and its checkpoints and reports every inconsistency, naming the
// first bad entry. v checks checkpoint signatures; with a nil v checkpoints are still compared
// with the chain but count as unverified.
func Verify(ctx context.Context, r ChainReader, v CheckpointVerifier) (*Report, error) {
	rep := &Report{}
	cps, err := r.ListAuditCheckpoints(ctx)
	if err != nil {
		return nil, err
	}
	rep.Checkpoints = len(cps)
	// Checkpoints whose payload is trusted, by seq.
	type cpInfo struct {
		head   []byte
		signed bool
	}
	want := map[int64]cpInfo{}
	var maxCP int64
	for _, c := range cps {
		if v == nil {
			rep.Unverified++
			want[c.Seq] = cpInfo{head: c.HeadHash}
			maxCP = max(maxCP, c.Seq)
			continue
		}
		payload, err := v.Verify(c.JWS)
		if errors.Is(err, ErrUnknownKey) {
			rep.Unverified++
			continue
		}
		if err != nil {
			rep.add(Problem{Seq: c.Seq, Kind: ProblemCheckpoint, Detail: err.Error()})
			continue
		}
		cp, err := ParseCheckpoint(payload)
		if err != nil {
			rep.add(Problem{Seq: c.Seq, Kind: ProblemCheckpoint, Detail: err.Error()})
			continue
		}
		head, _ := hex.DecodeString(cp.Head)
		if cp.Seq != c.Seq || !bytes.Equal(head, c.HeadHash) {
			rep.add(Problem{Seq: c.Seq, Kind: ProblemCheckpoint, Detail: "stored columns differ from the signed payload (seq " + strconv.FormatInt(cp.Seq, 10) + ")"})
		}
		rep.Signed++
		want[cp.Seq] = cpInfo{head: head, signed: true}
		maxCP = max(maxCP, cp.Seq)
	}

	var (
		expected     int64       = 1
		prevHash                 = GenesisHash
		recent       []seenEntry // the last `window` entries as stored
		lastGoodCP   int64
		pendingMoved = -1 // index of a problem whose row's predecessor link may point ahead (reorder)
		pendingPrev  []byte
		patients     = sha256.New()
		agents       = sha256.New()
	)
	lookup := func(h []byte) (int64, bool) {
		for i := len(recent) - 1; i >= 0; i-- {
			if bytes.Equal(recent[i].hash, h) {
				return recent[i].seq, true
			}
		}
		return 0, false
	}
	err = r.ScanAudit(ctx, 0, func(e sqlstore.AuditEntry) error {
		rep.Entries++
		ps := slices.Clone(e.Patients)
		slices.Sort(ps)
		for _, p := range slices.Compact(ps) {
			patients.Write([]byte(strconv.FormatInt(e.Seq, 10) + "\x00" + p + "\x00"))
		}
		for _, a := range sqlstore.AuditAgents(e) {
			agents.Write([]byte(strconv.FormatInt(e.Seq, 10) + "\x00" + a + "\x00"))
		}
		content := hashEqual(EntryHash(e), e.Hash)
		link := bytes.Equal(e.PrevHash, prevHash)
		resolved := false
		if pendingMoved >= 0 && bytes.Equal(e.Hash, pendingPrev) {
			resolved = true
			p := &rep.Problems[pendingMoved]
			p.Kind = ProblemReordered
			p.Detail = fmt.Sprintf("entry found at position %d belongs after the entry found at position %d", p.Seq, e.Seq)
			pendingMoved = -1
		}
		switch {
		case resolved:
			// already reported as the other half of a reordering
		case e.Seq > expected:
			rep.add(Problem{Seq: expected, Kind: ProblemDeleted, Detail: missing(expected, e.Seq-1)})
		case e.Seq < expected:
			rep.add(Problem{Seq: e.Seq, Kind: ProblemInserted, Detail: "duplicate sequence number"})
		case content && link:
			// intact
		case !link && content:
			// The entry is self-consistent but does not follow its predecessor.
			if j, ok := lookup(e.PrevHash); ok && j < e.Seq-1 {
				rep.add(Problem{Seq: j + 1, Kind: ProblemInserted, Detail: fmt.Sprintf("entries %s are not in the original chain: entry %d links to entry %d", span(j+1, e.Seq-1), e.Seq, j)})
			} else {
				rep.add(Problem{Seq: e.Seq - 1, Kind: ProblemRehashed, Detail: fmt.Sprintf("entry %d does not link to it: it was altered and its hash recomputed, or the link of entry %d was rewritten", e.Seq, e.Seq)})
			}
		default:
			// The content does not match the hash: altered, or moved (its hash was made for
			// another sequence number).
			orig, moved := originalSeq(e)
			switch {
			case !moved:
				if j, ok := lookup(e.PrevHash); ok && j < e.Seq-1 && !link {
					rep.add(Problem{Seq: j + 1, Kind: ProblemInserted, Detail: fmt.Sprintf("entries %s are not in the original chain", span(j+1, e.Seq-1))})
				} else {
					rep.add(Problem{Seq: e.Seq, Kind: ProblemAltered, Detail: "content does not match its hash"})
				}
			case orig < e.Seq:
				if j, ok := lookup(e.PrevHash); ok && j < e.Seq-1 {
					rep.add(Problem{Seq: j + 1, Kind: ProblemInserted, Detail: fmt.Sprintf("entries %s were inserted: entry %d was renumbered from %d", span(j+1, e.Seq-1), e.Seq, orig)})
				} else {
					rep.add(Problem{Seq: e.Seq, Kind: ProblemReordered, Detail: fmt.Sprintf("entry was moved from position %d", orig)})
				}
			default: // orig > e.Seq: an entry was removed before it, or it was moved forward
				if i := rep.add(Problem{Seq: e.Seq, Kind: ProblemDeleted, Detail: fmt.Sprintf("entry %d is missing: the next entry was renumbered from %d", e.Seq, orig)}); i >= 0 {
					pendingMoved, pendingPrev = i, e.PrevHash
				}
			}
		}
		if cp, ok := want[e.Seq]; ok {
			if !bytes.Equal(cp.head, e.Hash) {
				if rep.OK() {
					rep.add(Problem{Seq: lastGoodCP + 1, Kind: ProblemRewritten, Detail: fmt.Sprintf("the chain disagrees with the checkpoint at %d: an entry in %s was changed and the chain re-hashed after it", e.Seq, span(lastGoodCP+1, e.Seq))})
				}
			} else if rep.OK() {
				lastGoodCP = e.Seq
				if cp.signed {
					rep.LastSignedSeq = e.Seq
				}
			}
		}
		// Resynchronise on what is stored, so that one problem is reported once.
		expected = e.Seq + 1
		prevHash = e.Hash
		recent = append(recent, seenEntry{seq: e.Seq, hash: e.Hash})
		if len(recent) > window {
			recent = recent[1:]
		}
		rep.HeadSeq, rep.HeadHash = e.Seq, hex.EncodeToString(e.Hash)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if maxCP > rep.HeadSeq {
		rep.add(Problem{Seq: rep.HeadSeq + 1, Kind: ProblemTruncated, Detail: fmt.Sprintf("a checkpoint covers %d entries but the chain ends at %d", maxCP, rep.HeadSeq)})
	}
	for _, ix := range []struct {
		name string
		scan func(context.Context, func(int64, string) error) error
		want []byte
	}{
		{"patient index (audit_patients)", r.ScanAuditPatients, patients.Sum(nil)},
		{"agent index (audit_agents)", r.ScanAuditAgents, agents.Sum(nil)},
	} {
		h := sha256.New()
		if err := ix.scan(ctx, func(seq int64, v string) error {
			h.Write([]byte(strconv.FormatInt(seq, 10) + "\x00" + v + "\x00"))
			return nil
		}); err != nil {
			return nil, err
		}
		if !bytes.Equal(h.Sum(nil), ix.want) {
			rep.add(Problem{Seq: 0, Kind: ProblemIndex, Detail: "the " + ix.name + " differs from the entries; queries by it may be wrong"})
		}
	}
	return rep, nil
}

// add appends p and returns its index, or -1 when the report is full.
func (r *Report) add(p Problem) int {
	if len(r.Problems) >= maxProblems {
		return -1
	}
	r.Problems = append(r.Problems, p)
	return len(r.Problems) - 1
}

// originalSeq finds the sequence number e's hash was computed for, looking a little around its
// current one.
func originalSeq(e sqlstore.AuditEntry) (int64, bool) {
	for d := int64(1); d <= 8; d++ {
		for _, s := range []int64{e.Seq - d, e.Seq + d} {
			if s <= 0 {
				continue
			}
			c := e
			c.Seq = s
			if hashEqual(EntryHash(c), e.Hash) {
				return s, true
			}
		}
	}
	return e.Seq, false
}

func span(a, b int64) string {
	if a >= b {
		return strconv.FormatInt(a, 10)
	}
	return strconv.FormatInt(a, 10) + "-" + strconv.FormatInt(b, 10)
}

func missing(a, b int64) string {
	if a == b {
		return fmt.Sprintf("entry %d is missing", a)
	}
	return fmt.Sprintf("entries %d-%d are missing", a, b)
}
