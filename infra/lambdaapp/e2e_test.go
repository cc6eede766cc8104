package lambdaapp_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/opencontainers/go-digest"
	"github.com/regclient/regclient/types/descriptor"

	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/dynamo"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/awsstack"
	"github.com/tarport/tarport/shared/testkit/dynalite"
	"github.com/tarport/tarport/shared/testkit/fakehub"
	"github.com/tarport/tarport/shared/testkit/faultproxy"
	"github.com/tarport/tarport/shared/testkit/hostile"
	"github.com/tarport/tarport/shared/testkit/lambdatest"
	"github.com/tarport/tarport/shared/testkit/moto"
	"github.com/tarport/tarport/shared/testkit/regtest"
	"github.com/tarport/tarport/shared/testkit/s3test"
	"github.com/tarport/tarport/shared/testkit/sqsmapping"
	"github.com/tarport/tarport/shared/testkit/tarcheck"
)

// stack is tarport deployed the AWS way on loopback: the functions built
// by the Makefile's SAM targets and run under the Lambda emulator, S3 by
// versitygw, DynamoDB by dynalite, SQS by moto, the test playing API
// Gateway and the SQS event source mappings.
type stack struct {
	t        *testing.T
	reg      *regtest.Registry
	s3       *s3test.Server
	sqs      *moto.Server
	hub      *fakehub.Hub
	db       *dynalite.Server
	table    string
	bucket   string
	env      []string
	tasksURL string
	dlqURL   string

	mu        sync.Mutex
	functions map[string]*lambdatest.Function // logical id -> running function
}

func newStack(t *testing.T) *stack {
	t.Helper()
	st := &stack{t: t, functions: map[string]*lambdatest.Function{}}
	st.reg = regtest.Start(t)
	svc := awsstack.Start(t)
	st.s3, st.db, st.sqs = svc.S3, svc.DB, svc.SQS
	st.table = st.db.CreateTable(t, dynamo.Schema())
	st.bucket = st.s3.CreateBucket(t)
	st.tasksURL, st.dlqURL = svc.TasksURL, svc.DLQURL
	st.hub = fakehub.New(t, "")
	st.env = append(svc.Env(st.bucket, st.table, "test-task-key"),
		"TARPORT_INSECURE_REGISTRIES="+st.reg.Host,
		"TARPORT_HUB_API="+st.hub.URL,
		"TARPORT_LOG_LEVEL=debug",
	)
	return st
}

// depth is a queue's messages: visible, in flight, delayed.
func (st *stack) depth(url string) (visible, inFlight, delayed int) {
	st.t.Helper()
	v, f, d, err := sqsmapping.Depth(context.Background(), st.sqs.SQS(), url)
	if err != nil {
		st.t.Fatal(err)
	}
	return v, f, d
}

// start runs (or restarts) the function logicalID under the emulator.
func (st *stack) start(logicalID string, timeout time.Duration) *lambdatest.Function {
	st.t.Helper()
	f := lambdatest.Start(st.t, lambdatest.Build(st.t, logicalID), lambdatest.Options{Env: st.env, Timeout: timeout, Name: logicalID})
	st.mu.Lock()
	st.functions[logicalID] = f
	st.mu.Unlock()
	st.t.Cleanup(func() {
		if st.t.Failed() {
			st.t.Logf("%s output:\n%s", logicalID, f.Log())
		}
	})
	return f
}

func (st *stack) function(logicalID string) *lambdatest.Function {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.functions[logicalID]
}

// api plays API Gateway: one HTTP API (payload 2.0) event to the function.
func (st *stack) api(logicalID, method, target, body string, headers ...string) events.APIGatewayV2HTTPResponse {
	st.t.Helper()
	res, err := st.function(logicalID).HTTP(context.Background(), method, target, body, headers...)
	if err != nil {
		st.t.Fatalf("%s %s %s: %v", logicalID, method, target, err)
	}
	return res
}

// mapping plays the SQS event source mapping of queueURL to the assemble
// function running at the time of each poll.
func (st *stack) mapping(queueURL string, batch int32) *sqsmapping.Mapping {
	return &sqsmapping.Mapping{
		Client:    st.sqs.SQS(),
		QueueURL:  queueURL,
		BatchSize: batch,
		Timeout:   2 * time.Minute,
		Invoke: func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
			var out events.SQSEventResponse
			err := st.function("AssembleFunction").Invoke(ctx, ev, &out)
			return out, err
		},
	}
}

type jobView struct {
	ID         string `json:"id"`
	Status     string `json:"status"`
	TotalBytes int64  `json:"total_bytes"`
	DoneBytes  int64  `json:"done_bytes"`
	URL        string `json:"url"`
	Error      *struct {
		Code, Message string
	} `json:"error"`
}

func decodeJob(t *testing.T, res events.APIGatewayV2HTTPResponse) jobView {
	t.Helper()
	var j jobView
	if err := json.Unmarshal([]byte(res.Body), &j); err != nil {
		t.Fatalf("%d %q: %v", res.StatusCode, res.Body, err)
	}
	return j
}

// fetch downloads a presigned link with plain HTTP, as a browser or curl.
func (st *stack) fetch(url string) string {
	st.t.Helper()
	resp, err := st.s3.HTTPClient().Get(url)
	if err != nil {
		st.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		st.t.Fatalf("GET link: %s %s", resp.Status, b)
	}
	path := filepath.Join(st.t.TempDir(), "image.tar")
	f, err := os.Create(path)
	if err != nil {
		st.t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, resp.Body); err != nil {
		st.t.Fatal(err)
	}
	return path
}

// TestDownloadOnLambda: a multi-layer image from the local registry, asked
// for through API Gateway, fanned out over SQS to the assemble function,
// stitched in S3, ends as a presigned link whose tar skopeo verifies.
func TestDownloadOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	pushed := regtest.PushImage(t, st.reg, "team/app", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 12 << 20, Random: true}, // a stored entry over S3's 5 MiB part minimum
		{Size: 7 << 20, Random: true},
		{},
		{Empty: true},
	}})
	st.start("DownloadFunction", 29*time.Second)
	st.start("AssembleFunction", 2*time.Minute)

	res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"image":%q,"platform":"linux/amd64"}`, pushed.Ref))
	job := decodeJob(t, res)
	if res.StatusCode != http.StatusAccepted || job.ID == "" || job.Status != "queued" {
		t.Fatalf("create: %d %s", res.StatusCode, res.Body)
	}
	if n, err := sqsmapping.Drain(context.Background(), st.mapping(st.tasksURL, 10), st.mapping(st.dlqURL, 10)); err != nil || n == 0 {
		t.Fatalf("draining the task queue: %d invocations, %v", n, err)
	}
	res = st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, "")
	job = decodeJob(t, res)
	if job.Status != "ready" || job.URL == "" || job.DoneBytes != job.TotalBytes {
		t.Fatalf("after the queue drained: %s", res.Body)
	}
	path := st.fetch(job.URL)
	c := tarcheck.Structure(t, path)
	if c.Size != job.TotalBytes || c.ManifestDigest != pushed.Images[0].Manifest.Digest {
		t.Fatalf("tar of %d bytes with manifest %s; want %d bytes of %s", c.Size, c.ManifestDigest, job.TotalBytes, pushed.Images[0].Manifest.Digest)
	}
	tarcheck.Skopeo(t, path)
	tarcheck.GGCR(t, path)

	// Asked again, through the curl one-liner: it joins the ready job and
	// redirects to a fresh link at once.
	res = st.api("DownloadFunction", "GET", "/api/pull/"+pushed.Ref+"?platform=linux/amd64", "")
	if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Headers["Location"], "X-Amz-Signature") {
		t.Fatalf("pull of a ready image: %d %v %s", res.StatusCode, res.Headers, res.Body)
	}
	// And through the seed's endpoints with the seed's body: on AWS the
	// same redirect (a Lambda cannot stream the tar).
	for _, endpoint := range []string{"/api/download", "/api/download-stream"} {
		res = st.api("DownloadFunction", "POST", endpoint, fmt.Sprintf(`{"image": %q, "platform": "linux/amd64"}`, pushed.Ref))
		if res.StatusCode != http.StatusSeeOther || !strings.Contains(res.Headers["Location"], "X-Amz-Signature") {
			t.Fatalf("POST %s of a ready image: %d %v %s", endpoint, res.StatusCode, res.Headers, res.Body)
		}
	}

	// The functions' output: JSON lines Lambda's filter reads (level and an
	// RFC 3339 timestamp), and the invocations' metrics as EMF lines.
	metrics := st.emf(t, "DownloadFunction", "AssembleFunction")
	if metrics["JobsCreated"] != 1 || metrics["JobsFinished"] != 1 || metrics["RegistryBytes"] < 19<<20 || metrics["Requests"] < 3 {
		t.Fatalf("EMF metrics written: %v; want a job created and finished, its bytes from the registry, the requests", metrics)
	}
}

// emf checks the functions' output is JSON lines Lambda's filter reads
// (a level and an RFC 3339 timestamp) and sums the metrics of their EMF
// lines by name.
func (st *stack) emf(t *testing.T, functions ...string) map[string]float64 {
	t.Helper()
	metrics := map[string]float64{}
	for _, fn := range functions {
		for _, line := range strings.Split(st.function(fn).Log(), "\n") {
			if !strings.HasPrefix(line, "{") {
				continue // the emulator's own lines
			}
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("%s wrote a line that is not JSON: %s", fn, line)
			}
			ts, _ := rec["timestamp"].(string)
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil || rec["level"] == nil {
				t.Fatalf("%s: a line without level or RFC 3339 timestamp: %s", fn, line)
			}
			if aws, ok := rec["_aws"].(map[string]any); ok {
				for _, d := range aws["CloudWatchMetrics"].([]any) {
					for _, m := range d.(map[string]any)["Metrics"].([]any) {
						name := m.(map[string]any)["Name"].(string)
						if v, ok := rec[name].(float64); ok {
							metrics[name] += v
						}
					}
				}
			}
		}
	}
	return metrics
}

// TestSplitLayerOnLambda: a layer over TARPORT_SPLIT_ABOVE is fetched by
// range tasks in parallel invocations, checked whole by a verify task and
// only then cached; the tar is still exact.
func TestSplitLayerOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.env = append(st.env, "TARPORT_SPLIT_ABOVE=8MiB", "TARPORT_RANGE_SIZE=5MiB")
	pushed := regtest.PushImage(t, st.reg, "team/split", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 23 << 20, Random: true}, // 5 parts of 5 MiB
		{Size: 1 << 20, Random: true},
	}})
	st.start("DownloadFunction", 29*time.Second)
	st.start("AssembleFunction", 2*time.Minute)
	res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"image":%q}`, pushed.Ref))
	job := decodeJob(t, res)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %s", res.StatusCode, res.Body)
	}
	if visible, _, _ := st.depth(st.tasksURL); visible < 6 {
		t.Fatalf("%d task messages, want 5 ranges and a whole layer at least", visible)
	}
	if _, err := sqsmapping.Drain(context.Background(), st.mapping(st.tasksURL, 3), st.mapping(st.dlqURL, 10)); err != nil {
		t.Fatal(err)
	}
	job = decodeJob(t, st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, ""))
	if job.Status != "ready" {
		t.Fatalf("after the queue drained: %+v", job)
	}
	path := st.fetch(job.URL)
	tarcheck.Skopeo(t, path)
	if c := tarcheck.Structure(t, path); c.ManifestDigest != pushed.Images[0].Manifest.Digest {
		t.Fatalf("manifest %s", c.ManifestDigest)
	}
	for _, k := range st.s3.Keys(t, st.bucket) {
		if strings.HasPrefix(k, "staging/") {
			t.Fatalf("staging object left: %s", k)
		}
	}
	if ups := st.s3.Uploads(t, st.bucket); len(ups) != 0 {
		t.Fatalf("uploads left: %v", ups)
	}
}

// TestSplitLayerSharedOnLambda: two images sharing a split layer, asked
// for at once, fetch it from the registry once: the second job's await
// task looks again (an SQS message delay) until the first job's verified
// entry is in, then checks its own access and uses it.
func TestSplitLayerSharedOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.env = append(st.env, "TARPORT_SPLIT_ABOVE=8MiB", "TARPORT_RANGE_SIZE=5MiB", "TARPORT_SPLIT_POLL=1s")
	var pushed []regtest.Pushed
	for _, tag := range []string{"v1", "v2"} {
		pushed = append(pushed, regtest.PushImage(t, st.reg, "team/shared", tag, regtest.ImageSpec{Layers: []regtest.LayerSpec{
			{Size: 23 << 20, Random: true, Seed: "shared base"}, // 5 parts of 5 MiB
			{Size: 1 << 20, Random: true},
		}}))
	}
	if pushed[0].Images[0].Manifest.Digest == pushed[1].Images[0].Manifest.Digest {
		t.Fatal("the two tags are one image")
	}
	st.start("DownloadFunction", 29*time.Second)
	st.start("AssembleFunction", 2*time.Minute)
	var jobs []jobView
	for _, p := range pushed {
		res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"image":%q}`, p.Ref))
		if res.StatusCode != http.StatusAccepted {
			t.Fatalf("create %s: %d %s", p.Ref, res.StatusCode, res.Body)
		}
		jobs = append(jobs, decodeJob(t, res))
	}
	// The first job's 5 ranges and small layer, the second's await and
	// small layer: not 5 more ranges.
	if visible, _, _ := st.depth(st.tasksURL); visible != 8 {
		t.Fatalf("%d task messages, want 8", visible)
	}
	if _, err := sqsmapping.Drain(context.Background(), st.mapping(st.tasksURL, 3), st.mapping(st.dlqURL, 10)); err != nil {
		t.Fatal(err)
	}
	for i, job := range jobs {
		job = decodeJob(t, st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, ""))
		if job.Status != "ready" || job.DoneBytes != job.TotalBytes {
			t.Fatalf("job %d after the queue drained: %+v", i, job)
		}
		path := st.fetch(job.URL)
		tarcheck.Skopeo(t, path)
		if c := tarcheck.Structure(t, path); c.ManifestDigest != pushed[i].Images[0].Manifest.Digest {
			t.Fatalf("job %d: manifest %s", i, c.ManifestDigest)
		}
	}
	metrics := st.emf(t, "AssembleFunction")
	if got := metrics["RegistryBytes"]; got < 23<<20 || got > 26<<20 {
		t.Fatalf("%.0f bytes read from the registry; want the shared 23 MiB layer once and two small ones", got)
	}
	if ups := st.s3.Uploads(t, st.bucket); len(ups) != 0 {
		t.Fatalf("uploads left: %v", ups)
	}
}

// TestBundleOnLambda: two images sharing a base, asked for as one bundle,
// make one job and one tar on AWS: the base fetched once and one entry,
// each image readable by its name.
func TestBundleOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	base := regtest.LayerSpec{Size: 7 << 20, Random: true, Seed: "lambda bundle base"}
	web := regtest.PushImage(t, st.reg, "team/web", "1", regtest.ImageSpec{Layers: []regtest.LayerSpec{base, {Size: 1 << 20}}})
	api := regtest.PushImage(t, st.reg, "team/api", "2", regtest.ImageSpec{Layers: []regtest.LayerSpec{base, {Size: 2 << 20}}})
	st.start("DownloadFunction", 29*time.Second)
	st.start("AssembleFunction", 2*time.Minute)
	res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"images":[%q,%q]}`, web.Ref, api.Ref))
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %s", res.StatusCode, res.Body)
	}
	job := decodeJob(t, res)
	if visible, _, _ := st.depth(st.tasksURL); visible != 3 {
		t.Fatalf("%d task messages, want the 3 distinct layers", visible)
	}
	if _, err := sqsmapping.Drain(context.Background(), st.mapping(st.tasksURL, 3), st.mapping(st.dlqURL, 10)); err != nil {
		t.Fatal(err)
	}
	res = st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, "")
	job = decodeJob(t, res)
	if job.Status != "ready" || !strings.Contains(res.Body, `"images":[{`) {
		t.Fatalf("after the queue drained: %s", res.Body)
	}
	path := st.fetch(job.URL)
	for _, p := range []regtest.Pushed{web, api} {
		name := p.Ref // host:port/team/web:1, as manifest.json names it
		if diffIDs, config := tarcheck.SkopeoNamed(t, path, name); !slices.Equal(diffIDs, p.Images[0].DiffIDs) || config != p.Images[0].Config.Digest {
			t.Fatalf("skopeo %s: %v %s; want %v %s", name, diffIDs, config, p.Images[0].DiffIDs, p.Images[0].Config.Digest)
		}
	}
	if got := st.emf(t, "AssembleFunction")["RegistryBytes"]; got < 7<<20 || got > 11<<20 {
		t.Fatalf("%.0f bytes from the registry; want the shared base once", got)
	}
}

// TestWorkerKilledMidLayer: the assemble function dies while a layer is
// half in S3; SQS redelivers its message after the visibility timeout, a
// new instance redoes the layer and the job still ends with a correct tar.
func TestWorkerKilledMidLayer(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	pushed := regtest.PushImage(t, st.reg, "team/big", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{
		{Size: 200 << 20, Random: true},
	}})
	st.start("DownloadFunction", 29*time.Second)
	st.start("AssembleFunction", 2*time.Minute)
	res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"image":%q}`, pushed.Ref))
	job := decodeJob(t, res)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %s", res.StatusCode, res.Body)
	}

	tasks := st.mapping(st.tasksURL, 1)
	round := make(chan sqsmapping.Round, 1)
	go func() {
		r, err := tasks.Poll(context.Background())
		if err != nil {
			t.Error(err)
		}
		round <- r
	}()
	// Kill it once a multipart upload of the entry is under way.
	deadline := time.Now().Add(time.Minute)
	for len(st.s3.Uploads(t, st.bucket)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no multipart upload began within a minute")
		}
		time.Sleep(10 * time.Millisecond)
	}
	st.function("AssembleFunction").Stop()
	if r := <-round; r.Err == nil || len(r.Deleted) != 0 {
		t.Fatalf("the killed invocation: %+v", r)
	}
	if ups := st.s3.Uploads(t, st.bucket); len(ups) != 1 {
		t.Fatalf("uploads after the kill: %v, want the killed worker's one", ups)
	}
	if _, inFlight, _ := st.depth(st.tasksURL); inFlight != 1 {
		t.Fatalf("the task message is not in flight after the kill (in flight: %d)", inFlight)
	}

	st.start("AssembleFunction", 2*time.Minute)
	if _, err := sqsmapping.Drain(context.Background(), tasks, st.mapping(st.dlqURL, 10)); err != nil {
		t.Fatal(err)
	}
	job = decodeJob(t, st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, ""))
	if job.Status != "ready" {
		t.Fatalf("after redelivery: %+v", job)
	}
	path := st.fetch(job.URL)
	tarcheck.Skopeo(t, path)
	// The killed worker's upload stays until the bucket's lifecycle rule
	// aborts it (a day): no process was left to abort it.
	if ups := st.s3.Uploads(t, st.bucket); len(ups) != 1 {
		t.Fatalf("multipart uploads left: %v, want only the killed worker's", ups)
	}
}

// TestDiscoveryOnLambda: the search and popular functions answer in the
// API's shapes from the fake Docker Hub, cache in DynamoDB (a fresh
// instance answers from the table, no upstream call), and serve only
// their part of the API.
func TestDiscoveryOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	st.start("SearchFunction", 29*time.Second)
	st.start("PopularFunction", 29*time.Second)

	res := st.api("SearchFunction", "GET", "/api/search?q=nginx&limit=3", "")
	var page struct {
		Results []struct {
			Name string `json:"name"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(res.Body), &page); err != nil || res.StatusCode != http.StatusOK || len(page.Results) == 0 || res.Headers["X-Cache"] != "MISS" {
		t.Fatalf("search: %d %v %s", res.StatusCode, res.Headers, res.Body)
	}
	hits := st.hub.TotalHits()

	st.function("SearchFunction").Stop()
	st.start("SearchFunction", 29*time.Second) // a cold instance: only the table remembers
	res = st.api("SearchFunction", "GET", "/api/search?q=nginx&limit=3", "")
	if res.StatusCode != http.StatusOK || res.Headers["X-Cache"] != "HIT" || st.hub.TotalHits() != hits {
		t.Fatalf("search on a new instance: %d X-Cache %q, hub hits %d -> %d", res.StatusCode, res.Headers["X-Cache"], hits, st.hub.TotalHits())
	}

	if res := st.api("PopularFunction", "GET", "/api/popular?limit=5", ""); res.StatusCode != http.StatusOK || !strings.Contains(res.Body, `"results"`) {
		t.Fatalf("popular: %d %s", res.StatusCode, res.Body)
	}
	if res := st.api("SearchFunction", "POST", "/api/downloads", `{"image":"nginx"}`); res.StatusCode != http.StatusNotFound {
		t.Fatalf("downloads on the search function: %d %s", res.StatusCode, res.Body)
	}
}

// TestPoisonTaskDeadLetters: a layer that never arrives (the registry's
// CDN stalls) times the assemble function out on every delivery; after
// the queue's maxReceiveCount the message goes to the dead-letter queue,
// whose mapping fails the job with a clear error instead of leaving it
// hanging.
func TestPoisonTaskDeadLetters(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	proxy := faultproxy.New(t, st.reg.URL())
	st.env = append(st.env,
		"TARPORT_DOCKERHUB_REGISTRY="+proxy.URL(),
		"TARPORT_INSECURE_REGISTRIES="+st.reg.Host+","+proxy.CDNHost(),
	)
	regtest.PushImage(t, st.reg, "library/slow", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 1 << 20, Random: true}}})
	st.start("DownloadFunction", 29*time.Second)
	st.start("AssembleFunction", 4*time.Second)
	res := st.api("DownloadFunction", "POST", "/api/downloads", `{"image":"slow:v1"}`)
	job := decodeJob(t, res)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %s", res.StatusCode, res.Body)
	}
	proxy.Stall(0, time.Minute, 1000) // the config is read; the layer will not come
	tasks, dead := st.mapping(st.tasksURL, 1), st.mapping(st.dlqURL, 10)
	tasks.Timeout, dead.Timeout = 4*time.Second, 4*time.Second
	deadLetters := 0
	invokeDead := dead.Invoke
	dead.Invoke = func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		deadLetters += len(ev.Records)
		return invokeDead(ctx, ev)
	}
	if _, err := sqsmapping.Drain(context.Background(), tasks, dead); err != nil {
		t.Fatal(err)
	}
	if deadLetters != 1 {
		t.Fatalf("%d messages went to the dead-letter queue, want 1", deadLetters)
	}
	job = decodeJob(t, st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, ""))
	if job.Status != "failed" || job.Error == nil || !strings.Contains(job.Error.Message, "could not finish layer") {
		t.Fatalf("after the dead-letter queue: %+v %+v", job, job.Error)
	}
}

// TestWarmOnLambda: the scheduled warm refreshes the popular list into
// the table and starts a job for each hot image, whose layers then sit in
// the entry cache.
func TestWarmOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	pushed := regtest.PushImage(t, st.reg, "team/hot", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 6 << 20, Random: true}}})
	st.env = append(st.env, "TARPORT_HOT_IMAGES="+pushed.Ref+" linux/amd64")
	warm := st.start("WarmFunction", time.Minute)
	st.start("AssembleFunction", 2*time.Minute)
	st.start("PopularFunction", 29*time.Second)
	ev := events.EventBridgeEvent{Version: "0", ID: "1", DetailType: "Scheduled Event", Source: "aws.events", Region: "us-east-1", Detail: json.RawMessage(`{}`)}
	if err := warm.Invoke(context.Background(), ev, nil); err != nil {
		t.Fatalf("warm: %v\n%s", err, warm.Log())
	}
	hits := st.hub.TotalHits()
	if hits == 0 {
		t.Fatal("the warm made no Docker Hub call")
	}
	if res := st.api("PopularFunction", "GET", "/api/popular", ""); res.StatusCode != http.StatusOK || res.Headers["X-Cache"] != "HIT" || st.hub.TotalHits() != hits {
		t.Fatalf("popular after the warm: %d X-Cache %q", res.StatusCode, res.Headers["X-Cache"])
	}
	if visible, _, _ := st.depth(st.tasksURL); visible != 1 {
		t.Fatalf("%d task messages after the warm, want the hot image's layer", visible)
	}
	if _, err := sqsmapping.Drain(context.Background(), st.mapping(st.tasksURL, 10), st.mapping(st.dlqURL, 10)); err != nil {
		t.Fatal(err)
	}
	digest := pushed.Images[0].Layers[0].Digest
	for _, k := range st.s3.Keys(t, st.bucket) {
		if strings.HasSuffix(k, strings.TrimPrefix(digest, "sha256:")) && strings.HasPrefix(k, "entries/") {
			return
		}
	}
	t.Fatalf("the hot image's layer %s is not in the entry cache: %v", digest, st.s3.Keys(t, st.bucket))
}

// TestPrivateImageOnLambda: a private image's credentials travel to the
// assemble function only sealed inside the task messages; neither the
// queue's bodies nor the table nor the bucket hold them, and the tar is
// complete.
func TestPrivateImageOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	const user, pass = "alice", "s3cret-Pa55word"
	private := regtest.Start(t, regtest.WithHtpasswd(user, pass))
	st.env = append(st.env, "TARPORT_INSECURE_REGISTRIES="+st.reg.Host+","+private.Host)
	pushed := regtest.PushImage(t, private, "team/secret", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 6 << 20, Random: true}, {}}})
	st.start("DownloadFunction", 29*time.Second)
	st.start("AssembleFunction", 2*time.Minute)

	if res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"image":%q}`, pushed.Ref)); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without credentials: %d %s", res.StatusCode, res.Body)
	}
	res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"image":%q,"username":%q,"password":%q}`, pushed.Ref, user, pass))
	job := decodeJob(t, res)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("with credentials: %d %s", res.StatusCode, res.Body)
	}
	// Peek at the queued bodies, then put them back (visible at once).
	out, err := st.sqs.SQS().ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(st.tasksURL), MaxNumberOfMessages: 10})
	if err != nil || len(out.Messages) == 0 {
		t.Fatalf("peeking at the queue: %d messages, %v", len(out.Messages), err)
	}
	for _, m := range out.Messages {
		if strings.Contains(aws.ToString(m.Body), pass) || strings.Contains(aws.ToString(m.Body), user+":") {
			t.Fatalf("a task message holds the credentials in clear: %s", aws.ToString(m.Body))
		}
		if _, err := st.sqs.SQS().ChangeMessageVisibility(context.Background(), &sqs.ChangeMessageVisibilityInput{
			QueueUrl: aws.String(st.tasksURL), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
		}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sqsmapping.Drain(context.Background(), st.mapping(st.tasksURL, 10), st.mapping(st.dlqURL, 10)); err != nil {
		t.Fatal(err)
	}
	// A private job's link is signed only for credentials the registry
	// authorizes again: the job id alone (in a status a link leaked) gets
	// no link, and says why.
	res = st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, "")
	if res.StatusCode != http.StatusUnauthorized || !strings.Contains(res.Body, `"credentials_required"`) || strings.Contains(res.Body, "X-Amz-Signature") {
		t.Fatalf("status of the ready private job without credentials: %d %s; want 401 credentials_required and no link", res.StatusCode, res.Body)
	}
	basic := func(u, p string) string {
		return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))
	}
	if res := st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, "", basic(user, "wrong")); res.StatusCode != http.StatusUnauthorized || strings.Contains(res.Body, "X-Amz-Signature") {
		t.Fatalf("status with a wrong password: %d %s; want 401 and no link", res.StatusCode, res.Body)
	}
	job = decodeJob(t, st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, "", basic(user, pass)))
	if job.Status != "ready" || job.URL == "" {
		t.Fatalf("private job with Alice's credentials: %+v %+v", job, job.Error)
	}
	if strings.Contains(job.URL, job.ID) {
		t.Errorf("the link %s names the job id", job.URL)
	}
	tarcheck.Skopeo(t, st.fetch(job.URL))

	scan, err := st.db.Client().Scan(context.Background(), &dynamodb.ScanInput{TableName: aws.String(st.table)})
	if err != nil {
		t.Fatal(err)
	}
	if raw := fmt.Sprint(scan.Items); strings.Contains(raw, pass) {
		t.Fatal("the table holds the password")
	}
	for _, f := range []*lambdatest.Function{st.function("DownloadFunction"), st.function("AssembleFunction")} {
		if strings.Contains(f.Log(), pass) {
			t.Fatal("a function logged the password")
		}
	}
}

// TestHostileRegistryOnLambda: the trust model on the AWS path. Alice's
// private image is cached in S3 under her registry's origin; a registry
// of the attacker's own that names her manifest digest, or lists one of
// her layers in a manifest of its own, and says yes to every blob HEAD,
// gets nothing: no job of theirs is ever ready, and nothing is cached
// under their origin.
func TestHostileRegistryOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	const user, pass = "alice", "alice-lambda-pw"
	private := regtest.Start(t, regtest.WithHtpasswd(user, pass))
	evil := hostile.Start(t)
	st.env = append(st.env, "TARPORT_INSECURE_REGISTRIES="+st.reg.Host+","+private.Host+","+evil.Host())
	pushed := regtest.PushImage(t, private, "alice/secret", "1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 6 << 20, Random: true}, {}}})
	st.start("DownloadFunction", 29*time.Second)
	st.start("AssembleFunction", 2*time.Minute)
	drain := func() {
		if _, err := sqsmapping.Drain(context.Background(), st.mapping(st.tasksURL, 10), st.mapping(st.dlqURL, 10)); err != nil {
			t.Fatal(err)
		}
	}

	res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"image":%q,"username":%q,"password":%q}`, pushed.Ref, user, pass))
	alice := decodeJob(t, res)
	drain()
	basic := "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	if alice = decodeJob(t, st.api("DownloadFunction", "GET", "/api/downloads/"+alice.ID, "", basic)); alice.Status != "ready" {
		t.Fatalf("Alice's job: %+v", alice)
	}
	img := pushed.Images[0]
	big := img.Layers[0]
	keys := strings.Join(st.s3.Keys(t, st.bucket), "\n")
	aliceOrigin, evilOrigin := tarport.RegistryOrigin(private.Host), tarport.RegistryOrigin(evil.Host())
	if !strings.Contains(keys, download.EntryKey(aliceOrigin, digest.Digest(big.Digest))) {
		t.Fatalf("Alice's layer is not cached under her registry's origin; keys:\n%s", keys)
	}

	evil.SetManifest("x", "1", hostile.Manifest{Claim: digest.Digest(img.Manifest.Digest), MediaType: img.Manifest.MediaType, ClaimSize: img.Manifest.Size})
	evil.ClaimEveryBlob()
	evil.SetBlob("", digest.Digest(big.Digest), hostile.Blob{Claim: big.Size})
	evil.PushImage("y", "1", descriptor.Descriptor{MediaType: big.MediaType, Digest: digest.Digest(big.Digest), Size: big.Size})
	for _, ref := range []string{evil.Ref("x", "1"), evil.Ref("y", "1")} {
		res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"image":%q}`, ref))
		if res.StatusCode != http.StatusAccepted && res.StatusCode != http.StatusOK {
			continue // refused at once: nothing to hand out
		}
		j := decodeJob(t, res)
		drain()
		j = decodeJob(t, st.api("DownloadFunction", "GET", "/api/downloads/"+j.ID, ""))
		if j.Status == "ready" || j.URL != "" {
			t.Fatalf("%s: the attacker's job is ready: %+v", ref, j)
		}
	}
	keys = strings.Join(st.s3.Keys(t, st.bucket), "\n")
	if strings.Contains(keys, "entries/"+evilOrigin.Key()+"/") || strings.Contains(keys, "meta/"+evilOrigin.Key()+"/"+"sha256/"+strings.TrimPrefix(img.Manifest.Digest, "sha256:")) {
		t.Fatalf("something of Alice's is cached under the attacker's origin:\n%s", keys)
	}
}

// TestTricklingLayerOnLambda: on AWS each task has the same limits as a
// local worker: a layer trickling under TARPORT_BLOB_MIN_RATE is cut,
// resumed and given up on within a few windows, whatever size it claims,
// so the assemble invocation ends (the message is not redelivered) and
// the job fails with upstream_timeout.
func TestTricklingLayerOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	evil := hostile.Start(t)
	d := descriptor.Descriptor{MediaType: hostile.MediaLayer, Digest: digest.FromString("lambda trickle"), Size: 900 << 20}
	evil.SetBlob("", d.Digest, hostile.Blob{Claim: d.Size, Trickle: 200 * time.Millisecond})
	evil.PushImage("trickle", "1", d)
	st.env = append(st.env,
		"TARPORT_INSECURE_REGISTRIES="+st.reg.Host+","+evil.Host(),
		"TARPORT_BLOB_IDLE_TIMEOUT=1s",
		"TARPORT_BLOB_MIN_RATE=1KiB",
	)
	st.start("DownloadFunction", 29*time.Second)
	st.start("AssembleFunction", 2*time.Minute)

	res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"image":%q}`, evil.Ref("trickle", "1")))
	job := decodeJob(t, res)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %d %s", res.StatusCode, res.Body)
	}
	start := time.Now()
	if _, err := sqsmapping.Drain(context.Background(), st.mapping(st.tasksURL, 10), st.mapping(st.dlqURL, 10)); err != nil {
		t.Fatal(err)
	}
	job = decodeJob(t, st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, ""))
	if job.Status != "failed" || job.Error == nil || job.Error.Code != "upstream_timeout" {
		t.Fatalf("job %s %+v, want failed with upstream_timeout", job.Status, job.Error)
	}
	if took := time.Since(start); took > time.Minute {
		t.Errorf("the trickling task ran %v", took)
	}
}

// TestForeignLayerOnLambda: a Windows base layer read from its URL is
// cached in S3 under that URL's origin, and a second image listing it
// reuses it (checked at its URL, not at the registry, which never had it).
func TestForeignLayerOnLambda(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	foreign := httptest.NewServer(regtest.ForeignLayerHandler())
	t.Cleanup(foreign.Close)
	baseURL := foreign.URL + "/base.tar.gz"
	first := regtest.PushWindows(t, st.reg, "win/app", "ltsc", baseURL)
	regtest.PushWindows(t, st.reg, "win/tool", "ltsc", baseURL)
	st.env = append(st.env, "TARPORT_INSECURE_REGISTRIES="+st.reg.Host+","+strings.TrimPrefix(foreign.URL, "http://"))
	st.start("DownloadFunction", 29*time.Second)
	st.start("AssembleFunction", 2*time.Minute)

	for _, ref := range []string{st.reg.Ref("win/app", "ltsc"), st.reg.Ref("win/tool", "ltsc")} {
		res := st.api("DownloadFunction", "POST", "/api/downloads", fmt.Sprintf(`{"image":%q,"platform":"windows/amd64"}`, ref))
		job := decodeJob(t, res)
		if res.StatusCode != http.StatusAccepted && res.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", ref, res.StatusCode, res.Body)
		}
		if _, err := sqsmapping.Drain(context.Background(), st.mapping(st.tasksURL, 10), st.mapping(st.dlqURL, 10)); err != nil {
			t.Fatal(err)
		}
		if job = decodeJob(t, st.api("DownloadFunction", "GET", "/api/downloads/"+job.ID, "")); job.Status != "ready" {
			t.Fatalf("%s: %+v %+v", ref, job, job.Error)
		}
		tarcheck.Skopeo(t, st.fetch(job.URL))
	}
	base := digest.Digest(first.Images[0].Layers[0].Digest)
	keys := strings.Join(st.s3.Keys(t, st.bucket), "\n")
	if !strings.Contains(keys, download.EntryKey(tarport.URLOrigin(baseURL), base)) || strings.Contains(keys, download.EntryKey(tarport.RegistryOrigin(st.reg.Host), base)) {
		t.Fatalf("the foreign layer is not cached (only) under its URL's origin:\n%s", keys)
	}
}
