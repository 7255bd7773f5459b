package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// WebhookOptions configures a WebhookSink.
type WebhookOptions struct {
	// URL receives the POSTs; https unless the host is loopback.
	URL string
	// Authorization is the Authorization header value sent, if any (e.g. "Bearer ..." or a
	// Splunk HEC "Splunk ..." token).
	Authorization string
	// MaxAttempts bounds the tries per batch; 5 when zero.
	MaxAttempts int
	// Backoff is the wait before the first retry, doubled after each; 500ms when zero.
	Backoff time.Duration
	// Client is the HTTP client; one with a 30s timeout when nil.
	Client *http.Client
}

// WebhookSink POSTs each batch as JSON lines (application/x-ndjson), one entry per line in the
// file sink's format. 2xx is success; 408, 429, 5xx and network errors are retried with
// exponential backoff (honouring Retry-After in seconds); other statuses fail the batch at once.
type WebhookSink struct {
	opts WebhookOptions
}

// NewWebhookSink checks the options.
func NewWebhookSink(opts WebhookOptions) (*WebhookSink, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("audit: webhook URL must be an absolute http(s) URL")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("audit: webhook URL must use https (http only to a loopback host)")
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = 5
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 30 * time.Second}
	}
	return &WebhookSink{opts: opts}, nil
}

// Name implements Sink.
func (s *WebhookSink) Name() string { return "webhook" }

// Write implements Sink.
func (s *WebhookSink) Write(ctx context.Context, entries []Entry) error {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	for _, e := range entries {
		if err := enc.Encode(e); err != nil {
			return err
		}
	}
	wait := s.opts.Backoff
	var last error
	for attempt := 1; attempt <= s.opts.MaxAttempts; attempt++ {
		retry, after, err := s.post(ctx, body.Bytes())
		if err == nil {
			return nil
		}
		last = err
		if !retry || attempt == s.opts.MaxAttempts {
			break
		}
		if after > wait {
			wait = after
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("audit: webhook: %w (last error: %w)", ctx.Err(), last)
		case <-time.After(wait):
		}
		wait *= 2
	}
	return fmt.Errorf("audit: webhook: %w", last)
}

func (s *WebhookSink) post(ctx context.Context, body []byte) (retry bool, after time.Duration, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.opts.URL, bytes.NewReader(body))
	if err != nil {
		return false, 0, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if s.opts.Authorization != "" {
		req.Header.Set("Authorization", s.opts.Authorization)
	}
	resp, err := s.opts.Client.Do(req)
	if err != nil {
		return true, 0, err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return false, 0, nil
	}
	if n, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && n > 0 {
		after = time.Duration(min(n, 300)) * time.Second
	}
	retry = resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500
	return retry, after, fmt.Errorf("status %s", resp.Status)
}

// Close implements Sink.
func (s *WebhookSink) Close() error { return nil }

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
