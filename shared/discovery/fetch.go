package discovery

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/tarport/tarport/shared/tarport"
)

// fetch returns the value under key: fresh from the cache, else from one
// upstream call shared by every concurrent caller of the same key, else
// (upstream failing) from the expired entry. refresh skips the fresh
// cache, for Warm.
func fetch[T any](ctx context.Context, s *Service, key string, ttl time.Duration, refresh bool, load func(context.Context) (T, error)) (Result[T], error) {
	if !refresh {
		if e, ok := s.lookup(ctx, key); ok && s.cfg.Now().Before(e.ExpiresAt) {
			if v, err := decode[T](e.Value); err == nil {
				return Result[T]{Value: v, Cached: true, StoredAt: e.StoredAt}, nil
			}
		}
	}
	// The flight outlives a caller that gives up: the others share it.
	ch := s.flights.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.UpstreamTimeout)
		defer cancel()
		return fill(fctx, s, key, ttl, refresh, load)
	})
	select {
	case <-ctx.Done():
		return Result[T]{}, tarport.Wrap(ctx.Err(), tarport.CodeUpstreamTimeout, "Docker Hub did not answer in time")
	case r := <-ch:
		if r.Err != nil {
			return Result[T]{}, r.Err
		}
		return r.Val.(Result[T]), nil
	}
}

// fill runs inside the flight. It looks at the cache again: a flight that
// just ended may have filled it between our miss and our flight.
func fill[T any](ctx context.Context, s *Service, key string, ttl time.Duration, refresh bool, load func(context.Context) (T, error)) (Result[T], error) {
	now := s.cfg.Now()
	old, found := s.lookup(ctx, key)
	if found && !refresh && now.Before(old.ExpiresAt) {
		if v, err := decode[T](old.Value); err == nil {
			return Result[T]{Value: v, Cached: true, StoredAt: old.StoredAt}, nil
		}
	}
	v, err := load(ctx)
	if err != nil {
		err = classify(err)
		if found && servesStale(err) {
			if sv, derr := decode[T](old.Value); derr == nil {
				stale := !now.Before(old.ExpiresAt)
				s.cfg.Logger.WarnContext(ctx, "discovery: upstream failed, serving cached value", "key", key, "stale", stale, "err", err)
				return Result[T]{Value: sv, Cached: true, Stale: stale, StoredAt: old.StoredAt}, nil
			}
		}
		return Result[T]{}, err
	}
	s.store(ctx, key, v, now, ttl)
	return Result[T]{Value: v, StoredAt: now}, nil
}

// lookup reads an entry still within its retention. A failing cache is a
// miss: browsing goes on against upstream.
func (s *Service) lookup(ctx context.Context, key string) (Entry, bool) {
	e, found, err := s.cache.Get(ctx, key)
	if err != nil {
		s.cfg.Logger.WarnContext(ctx, "discovery: reading cache", "key", key, "err", err)
		return Entry{}, false
	}
	if !found || (!e.DeleteAt.IsZero() && !s.cfg.Now().Before(e.DeleteAt)) {
		return Entry{}, false
	}
	return e, true
}

func (s *Service) store(ctx context.Context, key string, v any, now time.Time, ttl time.Duration) {
	b, err := encode(v)
	if err != nil {
		s.cfg.Logger.ErrorContext(ctx, "discovery: encoding cache value", "key", key, "err", err)
		return
	}
	if len(b) > MaxValueSize {
		s.cfg.Logger.WarnContext(ctx, "discovery: value too large to cache", "key", key, "bytes", len(b))
		return
	}
	e := Entry{Value: b, StoredAt: now, ExpiresAt: now.Add(ttl), DeleteAt: now.Add(ttl + s.cfg.Retention)}
	if err := s.cache.Set(ctx, key, e); err != nil {
		s.cfg.Logger.WarnContext(ctx, "discovery: writing cache", "key", key, "err", err)
	}
}

// classify codes the errors a Hub may leave uncoded: our own deadline.
func classify(err error) error {
	var coded *tarport.Error
	if !errors.As(err, &coded) && errors.Is(err, context.DeadlineExceeded) {
		return tarport.Wrap(err, tarport.CodeUpstreamTimeout, "Docker Hub did not answer in time")
	}
	return err
}

// servesStale: only upstream trouble is hidden by an old value; a
// repository that is gone (not_found) is not brought back from the cache.
func servesStale(err error) bool {
	switch tarport.ErrorCode(err) {
	case tarport.CodeUpstream, tarport.CodeUpstreamTimeout, tarport.CodeRateLimited:
		return true
	}
	return false
}

var gzipMagic = []byte{0x1f, 0x8b}

// maxDecoded bounds a decompressed value (a corrupted or hostile entry
// must not take the memory).
const maxDecoded = 32 << 20

// encode is JSON, gzipped above CompressAbove. JSON never starts with the
// gzip magic, so the value needs no flag.
func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(b) <= CompressAbove {
		return b, err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decode[T any](b []byte) (T, error) {
	var v T
	if bytes.HasPrefix(b, gzipMagic) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return v, fmt.Errorf("decompressing cache value: %w", err)
		}
		if b, err = io.ReadAll(io.LimitReader(zr, maxDecoded)); err != nil {
			return v, fmt.Errorf("decompressing cache value: %w", err)
		}
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, fmt.Errorf("decoding cache value: %w", err)
	}
	return v, nil
}
