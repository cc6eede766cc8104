package download

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/ref"

	"github.com/tarport/tarport/shared/tarplan"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/memjobs"
)

// In-memory fakes of the ports in ports.go. Each keeps the contract its
// interface documents (and that the real adapters keep), counts its calls,
// and lets a test override one behaviour with a func field.

// fakeRegistry serves images and blobs from memory. Its blob streams verify
// size and digest and fail at EOF with a digest_mismatch error, as the real
// reader does.
type fakeRegistry struct {
	mu       sync.Mutex
	images   map[string]tarport.Image // by ref.CommonName()
	blobs    map[digest.Digest][]byte
	resolves int
	opens    map[digest.Digest]int
	creds    []tarport.Credentials // of every OpenBlob

	// resolveErr, when set, is what Resolve returns.
	resolveErr error
	// open, when set, replaces the default blob stream; attempt counts the
	// OpenBlob calls for this digest, from 1.
	open func(ctx context.Context, d descriptor.Descriptor, attempt int) (io.ReadCloser, error)
	// checks counts CheckBlob calls and checked lists their origins;
	// denied makes them (and CheckManifest) refuse these credentials'
	// usernames.
	checks  int
	checked []tarport.Origin
	denied  map[string]bool
	// manifestChecks counts CheckManifest calls; onManifestCheck, when
	// set, is called by each, outside the lock.
	manifestChecks  int
	onManifestCheck func()
	// locate, when set, replaces Locate (by default a layer's first
	// origin: the registry); origins lists the origin of every OpenBlob.
	locate  func(d descriptor.Descriptor) (tarport.Origin, error)
	origins []tarport.Origin
	// ranges counts OpenBlobRange calls; corrupt flips a byte of every
	// range read of these blobs.
	ranges  int
	corrupt map[digest.Digest]bool
}

var _ Registry = (*fakeRegistry)(nil)

func newFakeRegistry() *fakeRegistry {
	return &fakeRegistry{images: map[string]tarport.Image{}, blobs: map[digest.Digest][]byte{}, opens: map[digest.Digest]int{}}
}

// add serves img under its reference, and its layers' bytes.
func (f *fakeRegistry) add(img tarport.Image, blobs map[digest.Digest][]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[img.Ref.CommonName()] = img
	for d, b := range blobs {
		f.blobs[d] = b
	}
}

func (f *fakeRegistry) Resolve(_ context.Context, r ref.Ref, p tarport.Platform, _ tarport.Credentials) (tarport.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolves++
	if f.resolveErr != nil {
		return tarport.Image{}, f.resolveErr
	}
	img, ok := f.images[r.CommonName()]
	if !ok {
		return tarport.Image{}, tarport.Errorf(tarport.CodeNotFound, "%s not found", r.CommonName())
	}
	img.Platform = p
	return img, nil
}

func (f *fakeRegistry) Locate(_ context.Context, r ref.Ref, d descriptor.Descriptor, _ tarport.Credentials) (tarport.Origin, error) {
	f.mu.Lock()
	locate := f.locate
	f.mu.Unlock()
	if locate != nil {
		return locate(d)
	}
	return tarport.Origins(r, d)[0], nil
}

func (f *fakeRegistry) OpenBlob(ctx context.Context, _ ref.Ref, d descriptor.Descriptor, o tarport.Origin, creds tarport.Credentials) (io.ReadCloser, error) {
	f.mu.Lock()
	f.opens[d.Digest]++
	attempt := f.opens[d.Digest]
	f.creds = append(f.creds, creds)
	f.origins = append(f.origins, o)
	open := f.open
	b, ok := f.blobs[d.Digest]
	f.mu.Unlock()
	if open != nil {
		return open(ctx, d, attempt)
	}
	if !ok {
		return nil, tarport.Errorf(tarport.CodeNotFound, "blob %s not found", d.Digest)
	}
	return verifying(d, chunked(bytes.NewReader(b), 4096)), nil
}

func (f *fakeRegistry) CheckBlob(_ context.Context, _ ref.Ref, d descriptor.Descriptor, o tarport.Origin, creds tarport.Credentials) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	f.checked = append(f.checked, o)
	if f.denied[creds.Username] {
		return tarport.Errorf(tarport.CodeUnauthorized, "%s may not read %s", creds.Username, d.Digest)
	}
	return nil
}

func (f *fakeRegistry) CheckManifest(_ context.Context, r ref.Ref, creds tarport.Credentials) error {
	if f.onManifestCheck != nil {
		f.onManifestCheck()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.manifestChecks++
	if f.denied[creds.Username] || creds.Anonymous() {
		return tarport.Errorf(tarport.CodeUnauthorized, "%q may not read %s", creds.Username, r.CommonName())
	}
	return nil
}

func (f *fakeRegistry) openCount(d digest.Digest) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.opens[d]
}

func (f *fakeRegistry) totalOpens() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.opens {
		n += c
	}
	return n
}

// verifyingReader hashes and counts what passes and fails at EOF unless it
// matches the descriptor.
type verifyingReader struct {
	r    io.Reader
	d    descriptor.Descriptor
	h    digest.Digester
	n    int64
	done bool
}

func verifying(d descriptor.Descriptor, r io.Reader) io.ReadCloser {
	return &verifyingReader{r: r, d: d, h: digest.SHA256.Digester()}
}

func (v *verifyingReader) Read(b []byte) (int, error) {
	n, err := v.r.Read(b)
	v.h.Hash().Write(b[:n])
	v.n += int64(n)
	if err == io.EOF && !v.done {
		v.done = true
		if v.n != v.d.Size || v.h.Digest() != v.d.Digest {
			return n, tarport.Errorf(tarport.CodeDigestMismatch, "blob %s: got %d bytes hashing to %s", v.d.Digest, v.n, v.h.Digest())
		}
	}
	return n, err
}

func (v *verifyingReader) Close() error { return nil }

// chunkedReader returns at most size bytes per Read, so progress is
// reported in many small steps.
type chunkedReader struct {
	r    io.Reader
	size int
}

func chunked(r io.Reader, size int) io.Reader { return &chunkedReader{r: r, size: size} }

func (c *chunkedReader) Read(b []byte) (int, error) {
	if len(b) > c.size {
		b = b[:c.size]
	}
	return c.r.Read(b)
}

// failAtEOF streams b and then fails with err instead of io.EOF.
type failAtEOF struct {
	r   io.Reader
	err error
}

func (f *failAtEOF) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	if err == io.EOF {
		return n, f.err
	}
	return n, err
}

func (f *failAtEOF) Close() error { return nil }

// blockingReader blocks until its context ends, then fails with its error.
type blockingReader struct{ ctx context.Context }

func (b blockingReader) Read([]byte) (int, error) {
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

func (b blockingReader) Close() error { return nil }

// fakeObjects is an object store in memory. Stitch builds the tar the way
// S3 would from the parts: copy parts from the entry objects, each upload
// part read from the tail on its own.
type fakeObjects struct {
	mu       sync.Mutex
	objs     map[string][]byte
	puts     map[string]int // successful puts per key
	failed   int            // puts that did not store
	gets     map[string]int
	stitches []stitchCall

	// onSize, when set, is called at the start of every Size.
	onSize func(ctx context.Context, key string)
	// onRange, when set, is called at the start of every GetRange.
	onRange func(key string)
	// stitch, when set, runs at the start of every Stitch; an error is
	// returned from Stitch.
	stitch func(ctx context.Context, key string) error

	uploads   map[string]*upload // parted objects being written, by id
	uploadSeq int
	partPuts  int
	moves     int
	ranges    int // GetRange calls
}

type stitchCall struct {
	key   string
	parts []tarplan.Part
}

var _ Objects = (*fakeObjects)(nil)

func newFakeObjects() *fakeObjects {
	return &fakeObjects{objs: map[string][]byte{}, puts: map[string]int{}, gets: map[string]int{}}
}

func notFoundErr(key string) error { return tarport.Errorf(tarport.CodeNotFound, "no object %s", key) }

func (f *fakeObjects) Size(ctx context.Context, key string) (int64, error) {
	if f.onSize != nil {
		f.onSize(ctx, key)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.objs[key]
	if !ok {
		return 0, notFoundErr(key)
	}
	return int64(len(b)), nil
}

func (f *fakeObjects) Put(_ context.Context, key string, r io.Reader, size int64) error {
	var buf bytes.Buffer
	buf.Grow(int(size) + 1)
	_, err := buf.ReadFrom(r)
	b := buf.Bytes()
	if err == nil && int64(len(b)) != size {
		err = fmt.Errorf("putting %s: got %d bytes, want %d", key, len(b), size)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		f.failed++
		return err
	}
	f.objs[key] = b
	f.puts[key]++
	return nil
}

func (f *fakeObjects) Get(_ context.Context, key string) (io.ReadCloser, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gets[key]++
	b, ok := f.objs[key]
	if !ok {
		return nil, notFoundErr(key)
	}
	return io.NopCloser(bytes.NewReader(b)), nil
}

func (f *fakeObjects) Stitch(ctx context.Context, key string, parts []tarplan.Part, entryKey func(digest.Digest) string, tail TailFunc) error {
	f.mu.Lock()
	f.stitches = append(f.stitches, stitchCall{key: key, parts: slices.Clone(parts)})
	hook := f.stitch
	f.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, key); err != nil {
			return err
		}
	}
	var out bytes.Buffer
	if len(parts) > 0 {
		last := parts[len(parts)-1]
		out.Grow(int(last.Offset + last.Size))
	}
	for i, p := range parts {
		if p.Number != i+1 || p.Offset != int64(out.Len()) || p.Size <= 0 {
			return fmt.Errorf("part %d of %s: number %d, offset %d (want %d), size %d", i, key, p.Number, p.Offset, out.Len(), p.Size)
		}
		if p.Copy() {
			f.mu.Lock()
			src, ok := f.objs[entryKey(p.Digest)]
			f.mu.Unlock()
			if !ok {
				return notFoundErr(entryKey(p.Digest))
			}
			if p.SourceOffset < 0 || p.SourceOffset+p.Size > int64(len(src)) {
				return fmt.Errorf("copy part %d reads [%d,%d) of a %d-byte entry", p.Number, p.SourceOffset, p.SourceOffset+p.Size, len(src))
			}
			out.Write(src[p.SourceOffset : p.SourceOffset+p.Size])
			continue
		}
		rc, err := tail(ctx, p.SourceOffset, p.Size)
		if err != nil {
			return fmt.Errorf("upload part %d: %w", p.Number, err)
		}
		n, err := io.Copy(&out, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("upload part %d: %w", p.Number, err)
		}
		if n != p.Size {
			return fmt.Errorf("upload part %d: tail gave %d bytes, want %d", p.Number, n, p.Size)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs[key] = out.Bytes()
	return nil
}

func (f *fakeObjects) object(key string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.objs[key]
	return b, ok
}

func (f *fakeObjects) putCount(key string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.puts[key]
}

func (f *fakeObjects) stitchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.stitches)
}

// fakeMeta is the manifest and config cache.
// fakeMeta keeps metadata under the stores' keys (MetaKey), one
// namespace per origin.
type fakeMeta struct {
	mu   sync.Mutex
	meta map[string][]byte
}

var _ MetaStore = (*fakeMeta)(nil)

func newFakeMeta() *fakeMeta { return &fakeMeta{meta: map[string][]byte{}} }

// put stores b as if testOrigin had served it.
func (f *fakeMeta) put(o tarport.Origin, b []byte) digest.Digest {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := digest.FromBytes(b)
	f.meta[MetaKey(o, d)] = b
	return d
}

func (f *fakeMeta) GetMeta(_ context.Context, o tarport.Origin, d digest.Digest) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.meta[MetaKey(o, d)]
	if !ok {
		return nil, tarport.Errorf(tarport.CodeNotFound, "no meta %s", d)
	}
	return b, nil
}

// fakeJobs is the in-memory job store (memjobs, which passes jobstest, so
// it keeps every rule of the real stores), recording the calls made to it
// and failing on demand.
type fakeJobs struct {
	store *memjobs.Jobs
	// now is the store's clock; a test may set it before the service runs.
	now func() time.Time

	mu       sync.Mutex
	creates  int
	statuses map[string][]tarport.Status // every SetStatus asked for, per job
	deltas   map[string][]int64          // every AddProgress delta, per "id/layer"
	finishes map[string]int              // FinishLayer calls, per "id/layer"

	// createErr, when set, is what Create returns.
	createErr error
	// onGet, when set, is called by every Get after it read the job.
	onGet func()
	// statusErr, when set, fails every SetStatus to failed.
	statusErr error
	// leaseAnswerLost, when set, makes the next LeaseSplit write and then
	// fail, as a call whose answer was lost.
	leaseAnswerLost atomic.Bool
}

var (
	_ Jobs       = (*fakeJobs)(nil)
	_ PartedJobs = (*fakeJobs)(nil)
)

func newFakeJobs() *fakeJobs {
	f := &fakeJobs{now: time.Now, statuses: map[string][]tarport.Status{}, deltas: map[string][]int64{}, finishes: map[string]int{}}
	f.store = memjobs.New(func() time.Time { return f.now() })
	return f
}

func layerKey(id string, layer int) string { return fmt.Sprintf("%s/%d", id, layer) }

// put stores job as is (for tests that start from a given record), live
// for a day unless it says otherwise.
func (f *fakeJobs) put(job tarport.Job) {
	if job.ExpiresAt.IsZero() {
		job.ExpiresAt = time.Now().Add(24 * time.Hour)
	}
	f.store.Put(job)
}

func (f *fakeJobs) Create(ctx context.Context, job tarport.Job) (tarport.Job, bool, error) {
	f.mu.Lock()
	f.creates++
	err := f.createErr
	f.mu.Unlock()
	if err != nil {
		return tarport.Job{}, false, err
	}
	return f.store.Create(ctx, job)
}

func (f *fakeJobs) Get(ctx context.Context, id string) (tarport.Job, error) {
	job, err := f.store.Get(ctx, id)
	if f.onGet != nil {
		f.onGet() // after the read: the caller acts on this snapshot
	}
	return job, err
}

func (f *fakeJobs) SetStatus(ctx context.Context, id string, status tarport.Status, jobErr *tarport.JobError) error {
	f.mu.Lock()
	f.statuses[id] = append(f.statuses[id], status)
	err := f.statusErr
	f.mu.Unlock()
	if err != nil && status == tarport.StatusFailed {
		return err
	}
	return f.store.SetStatus(ctx, id, status, jobErr)
}

func (f *fakeJobs) AddProgress(ctx context.Context, id string, layer int, delta int64) error {
	f.mu.Lock()
	f.deltas[layerKey(id, layer)] = append(f.deltas[layerKey(id, layer)], delta)
	f.mu.Unlock()
	return f.store.AddProgress(ctx, id, layer, delta)
}

func (f *fakeJobs) FinishLayer(ctx context.Context, id string, layer int) (int, bool, error) {
	f.mu.Lock()
	f.finishes[layerKey(id, layer)]++
	f.mu.Unlock()
	return f.store.FinishLayer(ctx, id, layer)
}

func (f *fakeJobs) FinishPart(ctx context.Context, id string, layer, part int) (int, bool, error) {
	return f.store.FinishPart(ctx, id, layer, part)
}

func (f *fakeJobs) LeaseSplit(ctx context.Context, key string, lease tarport.SplitLease, prev string) (tarport.SplitLease, error) {
	held, err := f.store.LeaseSplit(ctx, key, lease, prev)
	if f.leaseAnswerLost.CompareAndSwap(true, false) {
		return tarport.SplitLease{}, errors.New("the lease's answer was lost on the way")
	}
	return held, err
}

func (f *fakeJobs) job(t *testing.T, id string) tarport.Job {
	t.Helper()
	job, err := f.store.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return job
}

// all is every job stored.
func (f *fakeJobs) all() []tarport.Job { return f.store.All() }

func (f *fakeJobs) deltaList(id string, layer int) []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deltas[layerKey(id, layer)])
}

func (f *fakeJobs) deltaSum(id string, layer int) (sum int64, calls int) {
	deltas := f.deltaList(id, layer)
	for _, d := range deltas {
		sum += d
	}
	return sum, len(deltas)
}

func (f *fakeJobs) finishCount(id string, layer int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.finishes[layerKey(id, layer)]
}

func (f *fakeJobs) statusCalls(id string) []tarport.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.statuses[id])
}

func (f *fakeJobs) createCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.creates
}

func (f *fakeJobs) count() int { return len(f.store.All()) }

// fakeQueue records the tasks it is given, and the delays asked for.
type fakeQueue struct {
	mu      sync.Mutex
	batches [][]Task
	delays  []time.Duration
	err     error
}

var (
	_ Queue        = (*fakeQueue)(nil)
	_ DelayedQueue = (*fakeQueue)(nil)
)

// EnqueueAfter records the delay; the tests run tasks when they choose.
func (f *fakeQueue) EnqueueAfter(ctx context.Context, delay time.Duration, tasks []Task) error {
	f.mu.Lock()
	f.delays = append(f.delays, delay)
	f.mu.Unlock()
	return f.Enqueue(ctx, tasks)
}

func (f *fakeQueue) Enqueue(_ context.Context, tasks []Task) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	f.batches = append(f.batches, slices.Clone(tasks))
	return nil
}

func (f *fakeQueue) tasks() []Task {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Task
	for _, b := range f.batches {
		out = append(out, b...)
	}
	return out
}

func (f *fakeQueue) batchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.batches)
}

// fakeSigner makes recognisable links.
type fakeSigner struct {
	mu    sync.Mutex
	calls []signCall
	err   error
	// credentialsLeft, when set, is when the signing credentials expire:
	// links live no longer.
	credentialsLeft time.Duration
}

type signCall struct {
	key, fileName string
	ttl           time.Duration
}

var _ Signer = (*fakeSigner)(nil)

func (f *fakeSigner) Sign(_ context.Context, key, fileName string, ttl time.Duration) (string, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return "", 0, f.err
	}
	f.calls = append(f.calls, signCall{key, fileName, ttl})
	lifetime := ttl
	if f.credentialsLeft > 0 {
		lifetime = min(ttl, f.credentialsLeft)
	}
	return "https://signed.example/" + key + "?file=" + url.QueryEscape(fileName) + "&ttl=" + lifetime.String(), lifetime, nil
}

func (f *fakeSigner) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// harness is a Service over fresh fakes.
type harness struct {
	svc    *Service
	reg    *fakeRegistry
	objs   *fakeObjects
	meta   *fakeMeta
	jobs   *fakeJobs
	queue  *fakeQueue
	signer *fakeSigner
}

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	h := &harness{reg: newFakeRegistry(), objs: newFakeObjects(), meta: newFakeMeta(), jobs: newFakeJobs(), queue: &fakeQueue{}, signer: &fakeSigner{}}
	h.svc = New(h.reg, h.objs, h.meta, h.jobs, h.signer, cfg, slog.New(slog.DiscardHandler))
	h.svc.SetQueue(h.queue)
	// One clock: a test that sets the service's sets the store's.
	h.jobs.now = func() time.Time { return h.svc.now() }
	return h
}

// testOrigin is the registry the tests' images come from.
var testOrigin = tarport.RegistryOrigin("registry.example")

// testEntryKey is where a layer entry from testOrigin is stored.
func testEntryKey(d digest.Digest) string { return EntryKey(testOrigin, d) }

// testImage is an image with its layers' bytes, as the registry adapter
// would have resolved it (manifest and config in the meta cache).
type testImage struct {
	img   tarport.Image
	blobs map[digest.Digest][]byte
}

// newTestImage builds an OCI image named ref whose layers have the given
// sizes, with content from seed. A negative size repeats the layer at
// index -size-1 (a duplicate layer in the manifest).
func newTestImage(t *testing.T, refStr string, seed uint64, sizes ...int64) testImage {
	t.Helper()
	r, err := tarport.ParseReference(refStr)
	if err != nil {
		t.Fatal(err)
	}
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rng := rand.NewChaCha8(key)
	blobs := map[digest.Digest][]byte{}
	var layers []descriptor.Descriptor
	for _, size := range sizes {
		if size < 0 {
			layers = append(layers, layers[-size-1])
			continue
		}
		b := make([]byte, size)
		_, _ = rng.Read(b)
		d := digest.FromBytes(b)
		blobs[d] = b
		layers = append(layers, descriptor.Descriptor{MediaType: "application/vnd.oci.image.layer.v1.tar+gzip", Digest: d, Size: size})
	}
	config := []byte(fmt.Sprintf(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"seed":%d}`, seed))
	configDigest := digest.FromBytes(config)
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor.Descriptor{MediaType: "application/vnd.oci.image.config.v1+json", Digest: configDigest, Size: int64(len(config))},
		"layers":        append([]descriptor.Descriptor{}, layers...),
	})
	if err != nil {
		t.Fatal(err)
	}
	return testImage{
		img: tarport.Image{
			Ref:               r,
			Manifest:          manifest,
			ManifestDigest:    digest.FromBytes(manifest),
			ManifestMediaType: "application/vnd.oci.image.manifest.v1+json",
			Config:            config,
			ConfigDigest:      configDigest,
			Layers:            layers,
		},
		blobs: blobs,
	}
}

// serve makes the image resolvable and its manifest and config cached.
func (h *harness) serve(ti testImage) {
	h.reg.add(ti.img, ti.blobs)
	// Cached under the image's registry, as the registry adapter does.
	o := tarport.RegistryOrigin(ti.img.Ref.Registry)
	h.meta.put(o, ti.img.Manifest)
	h.meta.put(o, ti.img.Config)
}

// entryBytes is a blob's tar entry: header, content, padding.
func entryBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	d := digest.FromBytes(b)
	hdr, err := tarplan.Header(tarplan.BlobName(d), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	out := append(slices.Clone(hdr), b...)
	return append(out, tarplan.Padding(int64(len(b)))...)
}

// expectedTar writes the tar of layout directly: every entry's header,
// content and padding in order, then two zero blocks.
func expectedTar(t *testing.T, layout tarplan.Layout, blobs map[digest.Digest][]byte) []byte {
	t.Helper()
	var out bytes.Buffer
	out.Grow(int(layout.Size))
	for _, e := range layout.Entries {
		if int64(out.Len()) != e.Offset {
			t.Fatalf("entry %s planned at %d, written at %d", e.Name, e.Offset, out.Len())
		}
		out.Write(e.Header)
		if e.Fetched() {
			b, ok := blobs[e.Digest]
			if !ok {
				t.Fatalf("no bytes for blob %s", e.Digest)
			}
			out.Write(b)
		} else {
			out.Write(e.Inline)
		}
		out.Write(tarplan.Padding(e.Size))
	}
	out.Write(make([]byte, 1024))
	if int64(out.Len()) != layout.Size {
		t.Fatalf("expected tar is %d bytes, layout says %d", out.Len(), layout.Size)
	}
	return out.Bytes()
}

// planOf is the layout of the images' tar, planned as the service does.
func planOf(t *testing.T, imgs ...tarport.Image) tarplan.Layout {
	t.Helper()
	var ins []tarplan.Image
	for _, img := range imgs {
		ins = append(ins, planInput(jobImageOf(img), img.Manifest, img.ManifestMediaType, img.Config, img.Layers))
	}
	layout, err := tarplan.PlanImages(ins)
	if err != nil {
		t.Fatal(err)
	}
	return layout
}

// firstDiff describes where two byte slices first differ.
func firstDiff(got, want []byte) string {
	if bytes.Equal(got, want) {
		return ""
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("first difference at byte %d of %d (want %d bytes); sha256 got %x want %x", i, len(got), len(want), sha256.Sum256(got), sha256.Sum256(want))
		}
	}
	return fmt.Sprintf("got %d bytes, want %d (one is a prefix of the other)", len(got), len(want))
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // generous: the machine may be loaded
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
