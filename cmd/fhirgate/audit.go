package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/fhirgate/fhirgate/internal/audit"
	"github.com/fhirgate/fhirgate/internal/store/sqlstore"
)

func init() {
	register(command{name: "audit", summary: "verify the tamper-evident audit trail or list its AuditEvents (audit verify | audit list)", run: runAudit})
}

// errAuditTampered makes `audit verify` exit non-zero when the trail is not intact.
var errAuditTampered = errors.New("audit trail verification failed")

func runAudit(ctx context.Context, e env) error {
	verb, e, err := subcommand(e, "verify", "list")
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("audit "+verb, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	var cf configFlags
	cf.register(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON (verify)")
	jwksFile := fs.String("jwks", "", "verify: JWKS file trusted for checkpoint signatures (an off-box copy of the server's keys); default: the public keys in the store")
	since := fs.String("since", "", "list: entries recorded at or after this RFC 3339 time")
	until := fs.String("until", "", "list: entries recorded before this RFC 3339 time")
	patient := fs.String("patient", "", "list: entries concerning this Patient id")
	agent := fs.String("agent", "", "list: entries of this client id, user or fhirUser")
	outcome := fs.String("outcome", "", "list: success, denied, failure or error")
	action := fs.String("action", "", "list: action code (read, search-type, login, alert, ...)")
	after := fs.Int64("after", 0, "list: entries after this sequence number, oldest first (re-export from a known point)")
	limit := fs.Int("limit", 100, "list: at most this many entries (0: all)")
	if err := parseFlags(fs, e.args); err != nil {
		return err
	}
	_, store, _, err := cf.openStore(ctx, e, fs)
	if err != nil {
		return err
	}
	defer store.Close()
	if verb == "verify" {
		return auditVerify(ctx, e, store, *jwksFile, *asJSON)
	}
	f := sqlstore.AuditFilter{Patient: *patient, Agent: *agent, Outcome: *outcome, Action: *action}
	if *outcome != "" && !audit.Outcome(*outcome).Valid() {
		return fmt.Errorf("%w: --outcome must be success, denied, failure or error", errUsage)
	}
	for _, b := range []struct {
		flag string
		dst  *time.Time
	}{{*since, &f.Since}, {*until, &f.Until}} {
		if b.flag == "" {
			continue
		}
		if *b.dst, err = time.Parse(time.RFC3339Nano, b.flag); err != nil {
			return fmt.Errorf("%w: --since/--until must be RFC 3339 times: %w", errUsage, err)
		}
	}
	if *after > 0 {
		f.Ascending, f.Cursor = true, *after
	}
	return auditList(ctx, e.stdout, store, f, *limit)
}

// auditList prints entries as JSON lines in the sink format ({"seq","hash","prev","auditEvent"}),
// paging through the store.
func auditList(ctx context.Context, w io.Writer, store *sqlstore.Store, f sqlstore.AuditFilter, limit int) error {
	enc := json.NewEncoder(w)
	printed := 0
	for {
		f.Limit = 1000
		if limit > 0 {
			f.Limit = min(1000, limit-printed)
		}
		page, err := store.ListAuditEntries(ctx, f)
		if err != nil {
			return err
		}
		for _, e := range page {
			if err := enc.Encode(audit.Entry{Seq: e.Seq, Hash: hex.EncodeToString(e.Hash), PrevHash: hex.EncodeToString(e.PrevHash), AuditEvent: e.Event}); err != nil {
				return err
			}
		}
		printed += len(page)
		if len(page) < f.Limit || (limit > 0 && printed >= limit) {
			return nil
		}
		f.Cursor = page[len(page)-1].Seq
	}
}

func auditVerify(ctx context.Context, e env, store *sqlstore.Store, jwksFile string, asJSON bool) error {
	var set jose.JSONWebKeySet
	source := jwksFile
	if jwksFile != "" {
		data, err := os.ReadFile(jwksFile)
		if err != nil {
			return err
		}
		if set, err = audit.ParseKeySet(data); err != nil {
			return err
		}
	} else {
		source = "the public keys in the store (pass --jwks with an off-box copy to also catch an attacker who can write the database)"
		recs, err := store.ListOAuthKeys(ctx)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if len(r.PublicJWK) == 0 {
				continue
			}
			var k jose.JSONWebKey
			if err := k.UnmarshalJSON(r.PublicJWK); err != nil {
				return fmt.Errorf("key %s: %w", r.KID, err)
			}
			k.KeyID = r.KID
			set.Keys = append(set.Keys, k)
		}
	}
	rep, err := audit.Verify(ctx, store, audit.NewKeySetVerifier(set))
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "entries: %d (head %d %s)\n", rep.Entries, rep.HeadSeq, rep.HeadHash)
		fmt.Fprintf(e.stdout, "checkpoints: %d, signature verified: %d, unverifiable (unknown key): %d; keys: %s\n", rep.Checkpoints, rep.Signed, rep.Unverified, source)
		fmt.Fprintf(e.stdout, "signed up to entry %d", rep.LastSignedSeq)
		if rep.HeadSeq > rep.LastSignedSeq {
			fmt.Fprintf(e.stdout, "; entries %d-%d are chained but not yet covered by a checkpoint", rep.LastSignedSeq+1, rep.HeadSeq)
		}
		fmt.Fprintln(e.stdout)
		if rep.OK() {
			fmt.Fprintln(e.stdout, "OK: the chain is intact")
		}
		for i, p := range rep.Problems {
			if i == 0 {
				fmt.Fprintf(e.stdout, "FIRST BAD ENTRY: %d (%s): %s\n", p.Seq, p.Kind, p.Detail)
				continue
			}
			fmt.Fprintf(e.stdout, "also: %s\n", p)
		}
	}
	if !rep.OK() {
		first, _ := rep.FirstBad()
		return fmt.Errorf("%w: first bad entry %d (%s)", errAuditTampered, first.Seq, first.Kind)
	}
	return nil
}
