package importer

import (
	"context"
	"sync"

	"github.com/fhirgate/fhirgate/internal/backend"
	"github.com/fhirgate/fhirgate/internal/fhir"
)

// record is one resource read from an input, with where it came from.
type record struct {
	line  int
	entry int
	body  []byte
	typ   string
	id    string
	err   error
}

// chunk is a group of records validated together and written in one backend transaction.
type chunk struct {
	recs []record
	// validated is closed once every record has its typ, id or err.
	validated chan struct{}
}

// stream validates records in parallel and writes them in input order, one transaction per
// chunk. At most 2*Workers+2 chunks are in memory at once, which keeps memory flat.
type stream struct {
	im      *Importer
	ctx     context.Context
	file    string
	cur     []record
	work    chan *chunk
	ordered chan *chunk
	wg      sync.WaitGroup
	writer  chan error
}

func (im *Importer) newStream(ctx context.Context, file string) *stream {
	s := &stream{
		im:      im,
		ctx:     ctx,
		file:    file,
		work:    make(chan *chunk, im.opts.Workers),
		ordered: make(chan *chunk, im.opts.Workers+1),
		writer:  make(chan error, 1),
	}
	for range im.opts.Workers {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			for c := range s.work {
				for i := range c.recs {
					im.check(&c.recs[i])
				}
				close(c.validated)
			}
		}()
	}
	go func() {
		var err error
		for c := range s.ordered {
			<-c.validated
			if err == nil {
				err = im.chunkFn(ctx, file, c.recs)
			}
		}
		s.writer <- err
	}()
	return s
}

// add queues one record. It fails only when the context is done.
func (s *stream) add(r record) error {
	s.cur = append(s.cur, r)
	if len(s.cur) >= s.im.opts.ChunkSize {
		return s.flush()
	}
	return nil
}

func (s *stream) flush() error {
	if len(s.cur) == 0 {
		return s.ctx.Err()
	}
	c := &chunk{recs: s.cur, validated: make(chan struct{})}
	s.cur = make([]record, 0, s.im.opts.ChunkSize)
	select {
	case s.ordered <- c:
	case <-s.ctx.Done():
		return s.ctx.Err()
	}
	select {
	case s.work <- c:
	case <-s.ctx.Done():
		close(c.validated) // unvalidated: the writer skips it, as the context is done
		return s.ctx.Err()
	}
	return nil
}

// close writes what is queued and waits for the writer; it returns the first fatal error.
func (s *stream) close() error {
	ferr := s.flush()
	close(s.work)
	close(s.ordered)
	s.wg.Wait()
	werr := <-s.writer
	if werr != nil {
		return werr
	}
	if ferr != nil {
		return ferr
	}
	return nil
}

// check fills typ and id, or err, of a record: the structural checks and the Validator.
func (im *Importer) check(r *record) {
	h, err := fhir.DecodeHeader(r.body)
	if err != nil {
		r.err = err
		return
	}
	if h.ID != "" && !fhir.ValidID(h.ID) {
		r.err = fhir.Invalid(h.ResourceType+".id", "the resource id %q is not a valid FHIR id", h.ID)
		return
	}
	r.typ, r.id = h.ResourceType, h.ID
	if im.opts.Validator == nil {
		return
	}
	r.err = im.opts.Validator.Validate(h.ResourceType, r.body)
}

// writeChunk writes the valid records of a chunk in one transaction. When that fails, it writes
// them again one transaction each, so that one bad record costs only itself. It returns an error
// only when the context is done.
func (im *Importer) writeChunk(ctx context.Context, file string, recs []record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	valid := recs[:0:0]
	for _, r := range recs {
		if r.err != nil {
			im.fail(RecordError{File: file, Line: r.line, Entry: r.entry, Err: r.err})
			continue
		}
		valid = append(valid, r)
	}
	if len(valid) == 0 {
		return nil
	}
	err := im.opts.Backend.InTx(ctx, func(tx backend.Backend) error {
		for _, r := range valid {
			if err := write(ctx, tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		im.count(valid)
		return nil
	}
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	for _, r := range valid {
		err := im.opts.Backend.InTx(ctx, func(tx backend.Backend) error { return write(ctx, tx, r) })
		if err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			im.fail(RecordError{File: file, Line: r.line, Entry: r.entry, Err: err})
			continue
		}
		im.count([]record{r})
	}
	return nil
}

// write stores one resource: under its own id (update or create), or with a new id when it has
// none.
func write(ctx context.Context, tx backend.Backend, r record) error {
	var err error
	if r.id != "" {
		_, _, err = tx.Update(ctx, r.typ, r.id, r.body, backend.UpdateOptions{})
	} else {
		_, _, err = tx.Create(ctx, r.typ, r.body, backend.CreateOptions{})
	}
	return err
}

func (im *Importer) count(recs []record) {
	if len(recs) == 0 {
		return
	}
	byType := map[string]int64{}
	for _, r := range recs {
		byType[r.typ]++
	}
	im.resources.Add(int64(len(recs)))
	im.mu.Lock()
	for t, n := range byType {
		im.byType[t] += n
	}
	im.mu.Unlock()
}
