package main

import (
	"archive/zip"
	"bufio"
	"context"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tarport/tarport/shared/dynamo"
	"github.com/tarport/tarport/shared/testkit/awsstack"
	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/lambdatest"
	"github.com/tarport/tarport/shared/testkit/sqsmapping"
)

const (
	awsBegin = "<!-- bench-aws:begin -->"
	awsEnd   = "<!-- bench-aws:end -->"

	// awsPollEvery is how often the job is asked for its status. Each poll
	// is an invocation of the download function and a DynamoDB read on the
	// same 2 cores, so it is coarser than the local bench's 10 ms.
	awsPollEvery = 25 * time.Millisecond
	// awsWarmInvokes is how many invocations after the first give the warm
	// latency that the cold start is compared with.
	awsWarmInvokes = 5
)

// awsStack is tarport deployed the AWS way on loopback, as
// infra/lambdaapp's end-to-end tests stand it up: the functions built by
// the Makefile's SAM targets and run under the Lambda emulator, S3 by
// versitygw, DynamoDB by dynalite, SQS by the in-process fake, the bench
// playing API Gateway and the SQS event source mapping.
type awsStack struct {
	env     *environment
	dir     string
	rie     string
	svc     *awsstack.Services
	workers int
	serial  int

	functions []string          // logical ids, in template order
	host      map[string]string // logical id -> bootstrap for this machine's architecture
	arm64     map[string]string // logical id -> bootstrap as `sam build` makes it
	versions  []string
}

// awsFunctions is one round's running functions.
type awsFunctions struct {
	bucket, table string
	download      *lambdatest.Function
	assemble      []*lambdatest.Function
	mappings      []*sqsmapping.Mapping // one per assemble instance
}

// awsResult is one measured job on the AWS path.
type awsResult struct {
	ready       time.Duration // POST until the job is ready with a presigned URL
	fetch       time.Duration // curl of the presigned URL to a file
	peakRSS     int64         // largest VmHWM of the assemble bootstraps
	cpuAssemble time.Duration // user+sys of every assemble bootstrap
	cpuDownload time.Duration // of the download bootstrap (create and status polls)
	cpuS3       time.Duration // of versitygw
	cpuDB       time.Duration // of dynalite
	invocations int64         // of the assemble function
	tarSize     int64
}

func (r awsResult) summary() string {
	return fmt.Sprintf("ready %6.2fs  curl %6.2fs  assemble rss %7s  cpu assemble %.2fs download %.2fs versitygw %.2fs dynalite %.2fs  %d invocations",
		r.ready.Seconds(), r.fetch.Seconds(), formatBytes(r.peakRSS), r.cpuAssemble.Seconds(), r.cpuDownload.Seconds(), r.cpuS3.Seconds(), r.cpuDB.Seconds(), r.invocations)
}

// coldStart is one function's start under the emulator.
type coldStart struct {
	init  time.Duration // the emulator's INIT REPORT: exec until the runtime asks for work
	first time.Duration // first invocation's latency, init included
	warm  time.Duration // median latency of the invocations after it
}

// awsBench measures the AWS path and returns the markdown of its section.
func awsBench(ctx context.Context, e *environment, cases []*benchCase, local *results, runs, workers int) (string, error) {
	started := time.Now()
	m := describeMachine(e.work)
	cold, cached := findCase(cases, "1g"), findCase(cases, "1g-cached")
	if err := e.push(ctx, []*benchCase{cold, cached}); err != nil {
		return "", err
	}
	a, err := newAWSStack(ctx, e, workers)
	if err != nil {
		return "", err
	}
	defer a.close()

	sizes, err := a.build(ctx)
	if err != nil {
		return "", err
	}
	bucket, table, err := a.newTenant(ctx)
	if err != nil {
		return "", err
	}
	starts := map[string][]coldStart{}
	for round := 1; round <= runs; round++ {
		for _, id := range a.functions {
			cs, err := a.coldStart(ctx, id, a.funcEnv(bucket, table))
			if err != nil {
				return "", fmt.Errorf("cold start of %s: %w", id, err)
			}
			starts[id] = append(starts[id], cs)
			logf("round %d/%d  %-17s init %.1f ms, first invoke %.1f ms, warm %.1f ms", round, runs, id, ms(cs.init), ms(cs.first), ms(cs.warm))
		}
	}

	res := map[string][]awsResult{}
	for round := 1; round <= runs; round++ {
		rs, err := a.round(ctx, cold, cached)
		if err != nil {
			return "", fmt.Errorf("aws round %d: %w", round, err)
		}
		for i, c := range []*benchCase{cold, cached} {
			res[c.name] = append(res[c.name], rs[i])
			logf("round %d/%d  aws %-10s %s", round, runs, c.name, rs[i].summary())
		}
	}
	m.loadEnd = loadAverage()
	m.duration = time.Since(started)
	return awsReport(m, a, sizes, starts, []*benchCase{cold, cached}, res, local, runs), nil
}

// findCase returns the case named name of cases, or a new one to push.
func findCase(cases []*benchCase, name string) *benchCase {
	for _, c := range cases {
		if c.name == name {
			return c
		}
	}
	return selectCases([]string{name})[0]
}

func newAWSStack(ctx context.Context, e *environment, workers int) (*awsStack, error) {
	a := &awsStack{env: e, dir: filepath.Join(e.work, "aws"), workers: workers}
	var err error
	if a.rie, err = daemon.FindBinary("aws-lambda-rie"); err != nil {
		return nil, fmt.Errorf("%w (run ./infra/dev/install-deps.sh)", err)
	}
	if a.functions, err = templateFunctions("template.yaml"); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(a.dir, "build"), 0o755); err != nil {
		return nil, err
	}
	// The same stack the Lambda end-to-end tests run on.
	if a.svc, err = awsstack.Launch(ctx, a.dir); err != nil {
		return nil, err
	}
	bins := a.svc.Bins
	a.versions = []string{
		tarportVersion(ctx),
		moduleVersion(a.rie),
		moduleVersion(bins.Versitygw),
		"dynalite " + packageVersion(filepath.Join(filepath.Dir(bins.DynaliteCLI), "package.json")) + " on node " + commandOutput(ctx, os.Environ(), bins.Node, "--version"),
	}
	logf("aws stack: versitygw %s, dynalite %s, moto SQS %s", a.svc.S3.Endpoint(), a.svc.DB.Endpoint(), a.svc.SQS.URL)
	return a, nil
}

func (a *awsStack) close() {
	if a.svc != nil {
		a.svc.Stop()
	}
}

// templateFunctions lists the logical ids of template.yaml's
// AWS::Serverless::Function resources, each of which has a build-<id>
// target in the Makefile.
func templateFunctions(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	resource := regexp.MustCompile(`^  ([A-Za-z0-9]+):\s*$`)
	var out []string
	last := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if m := resource.FindStringSubmatch(line); m != nil {
			last = m[1]
			continue
		}
		if last != "" && strings.TrimSpace(line) == "Type: AWS::Serverless::Function" {
			out = append(out, last)
		}
		if strings.TrimSpace(line) != "" {
			last = ""
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s defines no AWS::Serverless::Function", path)
	}
	return out, nil
}

// bootstrapSize is one function's bootstrap as `sam build` makes it.
type bootstrapSize struct {
	bytes, zipped int64
}

// build makes every function twice: as `sam build` does (the Makefile's
// LAMBDA_GOARCH, arm64), to be measured, and for this machine, to run
// under the emulator.
func (a *awsStack) build(ctx context.Context) (map[string]bootstrapSize, error) {
	a.host, a.arm64 = map[string]string{}, map[string]string{}
	sizes := map[string]bootstrapSize{}
	for _, id := range a.functions {
		start := time.Now()
		p, err := lambdatest.Make(ctx, id, filepath.Join(a.dir, "build", "sam", id), "")
		if err != nil {
			return nil, err
		}
		a.arm64[id] = p
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		z, err := zippedSize(p)
		if err != nil {
			return nil, err
		}
		sizes[id] = bootstrapSize{bytes: fi.Size(), zipped: z}
		if a.host[id], err = lambdatest.Make(ctx, id, filepath.Join(a.dir, "build", runtime.GOARCH, id), runtime.GOARCH); err != nil {
			return nil, err
		}
		logf("built %s: %s (%s zipped) in %s", id, formatBytes(fi.Size()), formatBytes(z), time.Since(start).Round(100*time.Millisecond))
	}
	return sizes, nil
}

// zippedSize is the size of a zip holding the file alone (deflate, as the
// deployment package SAM uploads).
func zippedSize(p string) (int64, error) {
	f, err := os.Open(p)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var n countingWriter
	zw := zip.NewWriter(&n)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "bootstrap", Method: zip.Deflate})
	if err != nil {
		return 0, err
	}
	if _, err := io.Copy(w, f); err != nil {
		return 0, err
	}
	if err := zw.Close(); err != nil {
		return 0, err
	}
	return int64(n), nil
}

type countingWriter int64

func (c *countingWriter) Write(p []byte) (int, error) {
	*c += countingWriter(len(p))
	return len(p), nil
}

// funcEnv is the functions' configuration, as template.yaml sets it, on
// the loopback stack.
func (a *awsStack) funcEnv(bucket, table string) []string {
	return append(a.svc.Env(bucket, table, "bench-task-key"),
		"TARPORT_INSECURE_REGISTRIES="+a.env.registry.Host,
		"TARPORT_HUB_API=http://127.0.0.1:9", // nothing measured here asks Docker Hub
		"TARPORT_LOG_LEVEL=info",
		// Every status poll comes from the one bench client.
		"TARPORT_RATE_LIMIT_PER_MINUTE=100000000",
	)
}

// newTenant makes a fresh bucket and table: each round starts with no
// cached entry and no job.
func (a *awsStack) newTenant(ctx context.Context) (bucket, table string, err error) {
	a.serial++
	bucket, table = fmt.Sprintf("bench-%d", a.serial), fmt.Sprintf("bench-%d", a.serial)
	if err := a.svc.S3.NewBucket(ctx, bucket); err != nil {
		return "", "", err
	}
	if err := a.svc.DB.NewTable(ctx, table, dynamo.Schema()); err != nil {
		return "", "", err
	}
	return bucket, table, nil
}

// emptyBucket deletes what a round stored (2 tars and the entries, 3 GiB),
// so the rounds do not add up on disk.
func (a *awsStack) emptyBucket(ctx context.Context, bucket string) error {
	c := a.svc.S3.Client()
	p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing %s: %w", bucket, err)
		}
		for _, o := range out.Contents {
			if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: o.Key}); err != nil {
				return fmt.Errorf("deleting %s/%s: %w", bucket, aws.ToString(o.Key), err)
			}
		}
	}
	ups, err := c.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)})
	if err != nil {
		return fmt.Errorf("listing uploads of %s: %w", bucket, err)
	}
	for _, u := range ups.Uploads {
		if _, err := c.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(bucket), Key: u.Key, UploadId: u.UploadId}); err != nil {
			return fmt.Errorf("aborting upload of %s/%s: %w", bucket, aws.ToString(u.Key), err)
		}
	}
	return nil
}

// coldStart runs function id with env under a fresh emulator and invokes
// it: the first invocation starts the bootstrap (the emulator starts it
// lazily, as Lambda does). The probe is an event the function's runtime cannot
// decode, answered by the Go runtime library without calling the handler,
// so the same probe serves every function and the latencies hold no
// handler work.
func (a *awsStack) coldStart(ctx context.Context, id string, env []string) (coldStart, error) {
	// LOG_LEVEL is the emulator's own (lambdatest sets warn): its INIT
	// REPORT line is logged at info.
	env = append(slices.Clip(env), "LOG_LEVEL=info")
	f, err := lambdatest.Launch(ctx, a.rie, a.host[id], lambdatest.Options{Env: env, Name: id, Timeout: 30 * time.Second})
	if err != nil {
		return coldStart{}, err
	}
	defer f.Stop()
	probe := func() (time.Duration, error) {
		start := time.Now()
		err := f.Invoke(ctx, "bench: not an event", nil)
		d := time.Since(start)
		var fe *lambdatest.FunctionError
		if !errors.As(err, &fe) {
			return 0, fmt.Errorf("probe answered %v, want the runtime's decoding error\n%s", err, tail(f.Log(), 4000))
		}
		return d, nil
	}
	var cs coldStart
	if cs.first, err = probe(); err != nil {
		return cs, err
	}
	var warm []time.Duration
	for range awsWarmInvokes {
		d, err := probe()
		if err != nil {
			return cs, err
		}
		warm = append(warm, d)
	}
	cs.warm = median(warm)
	if cs.init, err = initReport(f); err != nil {
		return cs, err
	}
	return cs, nil
}

var initReportLine = regexp.MustCompile(`INIT REPORT\(durationMs: ([0-9.]+)\)`)

// initReport reads the init phase's duration the emulator logs once the
// runtime has asked for its first event. (Its REPORT line's "Init
// Duration" is not it: that is the emulator's own bookkeeping, ~0.1 ms.)
func initReport(f *lambdatest.Function) (time.Duration, error) {
	m := initReportLine.FindStringSubmatch(f.Log())
	if m == nil {
		return 0, fmt.Errorf("no INIT REPORT in the emulator's output:\n%s", tail(f.Log(), 4000))
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, err
	}
	return time.Duration(v * float64(time.Millisecond)), nil
}

// round runs a cold job of cold's image on a fresh bucket and table, then
// a job of cached's (the same layers under another tag) on what the first
// left behind. Each job gets freshly started functions, so a worker's
// peak RSS is that job's own; they are invoked once before the job, so
// their cold starts (measured on their own) are not in these figures.
func (a *awsStack) round(ctx context.Context, cold, cached *benchCase) ([]awsResult, error) {
	bucket, table, err := a.newTenant(ctx)
	if err != nil {
		return nil, err
	}
	var out []awsResult
	for _, c := range []*benchCase{cold, cached} {
		fs, err := a.startFunctions(ctx, bucket, table)
		if err != nil {
			return nil, err
		}
		r, err := a.measure(ctx, fs, c)
		if err != nil {
			err = fmt.Errorf("%s: %w\ndownload function:\n%s\nassemble function:\n%s", c.name, err, tail(fs.download.Log(), 3000), tail(fs.assemble[0].Log(), 3000))
		}
		fs.stop()
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := a.emptyBucket(ctx, bucket); err != nil {
		return nil, err
	}
	return out, nil
}

func (a *awsStack) startFunctions(ctx context.Context, bucket, table string) (*awsFunctions, error) {
	fs := &awsFunctions{bucket: bucket, table: table}
	ok := false
	defer func() {
		if !ok {
			fs.stop()
		}
	}()
	env := a.funcEnv(bucket, table)
	var err error
	if fs.download, err = lambdatest.Launch(ctx, a.rie, a.host["DownloadFunction"], lambdatest.Options{Env: env, Name: "DownloadFunction", Timeout: 29 * time.Second}); err != nil {
		return nil, err
	}
	if _, err := a.api(ctx, fs.download, "GET", "/api/health", ""); err != nil {
		return nil, fmt.Errorf("warming the download function: %w", err)
	}
	for range a.workers {
		f, err := lambdatest.Launch(ctx, a.rie, a.host["AssembleFunction"], lambdatest.Options{Env: env, Name: "AssembleFunction", Timeout: 900 * time.Second})
		if err != nil {
			return nil, err
		}
		fs.assemble = append(fs.assemble, f)
		var resp events.SQSEventResponse
		if err := f.Invoke(ctx, events.SQSEvent{Records: []events.SQSMessage{}}, &resp); err != nil {
			return nil, fmt.Errorf("warming an assemble function: %w\n%s", err, tail(f.Log(), 3000))
		}
		// The template's mapping: batches of AssembleBatchSize (1), each
		// poller invoking its own instance, as Lambda's pollers do up to
		// MaximumConcurrency.
		fs.mappings = append(fs.mappings, &sqsmapping.Mapping{
			Client:    a.svc.SQS.SQS(),
			QueueURL:  a.svc.TasksURL,
			BatchSize: 1,
			Wait:      time.Second,
			Timeout:   900 * time.Second,
			Invoke: func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
				var out events.SQSEventResponse
				err := f.Invoke(ctx, ev, &out)
				return out, err
			},
		})
	}
	ok = true
	return fs, nil
}

func (fs *awsFunctions) stop() {
	if fs.download != nil {
		fs.download.Stop()
	}
	for _, f := range fs.assemble {
		f.Stop()
	}
}

// measure asks for c's image through the download function while every
// assemble instance polls the task queue, until the job is ready; then it
// reads the workers' peak RSS, fetches the presigned URL with curl and
// checks the tar.
func (a *awsStack) measure(ctx context.Context, fs *awsFunctions, c *benchCase) (awsResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	cpu0, err := a.cpuSnapshot(fs)
	if err != nil {
		return awsResult{}, err
	}

	var invocations atomic.Int64
	stop := make(chan struct{})
	errc := make(chan error, len(fs.mappings))
	var wg sync.WaitGroup
	for _, m := range fs.mappings {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := pollTasks(ctx, m, stop, &invocations); err != nil {
				errc <- err
			}
		}()
	}
	var stopOnce sync.Once
	stopWorkers := func() {
		stopOnce.Do(func() {
			close(stop)
			wg.Wait()
		})
	}
	defer stopWorkers()

	start := time.Now()
	j, err := a.untilReady(ctx, fs, c, errc)
	if err != nil {
		return awsResult{}, err
	}
	r := awsResult{ready: time.Since(start)}
	stopWorkers()
	select {
	case err := <-errc:
		return r, err
	default:
	}
	r.invocations = invocations.Load()
	if visible, inFlight, delayed, err := sqsmapping.Depth(ctx, a.svc.SQS.SQS(), a.svc.TasksURL); err != nil || visible+inFlight+delayed > 0 {
		logf("warning: %d task messages left after job %s was ready", visible+inFlight+delayed, j.ID)
	}

	cpu1, err := a.cpuSnapshot(fs)
	if err != nil {
		return r, err
	}
	r.cpuAssemble, r.cpuDownload = cpu1.assemble-cpu0.assemble, cpu1.download-cpu0.download
	r.cpuS3, r.cpuDB = cpu1.s3-cpu0.s3, cpu1.db-cpu0.db
	for _, f := range fs.assemble {
		pid, err := bootstrapPid(f)
		if err != nil {
			return r, err
		}
		peak, err := procPeak(pid)
		if err != nil {
			return r, err
		}
		r.peakRSS = max(r.peakRSS, peak)
	}

	return r, a.fetchTar(ctx, c, j, &r)
}

// untilReady asks the download function for c and polls the job until it
// is ready, failing on a failed job or a worker's error.
func (a *awsStack) untilReady(ctx context.Context, fs *awsFunctions, c *benchCase, errc <-chan error) (job, error) {
	body, _ := json.Marshal(map[string]string{"image": c.ref, "platform": "linux/amd64"})
	j, err := a.api(ctx, fs.download, "POST", "/api/downloads", string(body))
	if err != nil {
		return job{}, err
	}
	for j.Status != "ready" || j.URL == "" {
		if j.Status == "failed" {
			if j.Error != nil {
				return job{}, fmt.Errorf("job %s failed: %s: %s", j.ID, j.Error.Code, j.Error.Message)
			}
			return job{}, fmt.Errorf("job %s failed", j.ID)
		}
		select {
		case err := <-errc:
			return job{}, err
		case <-ctx.Done():
			return job{}, fmt.Errorf("job %s is %s: %w", j.ID, j.Status, ctx.Err())
		case <-time.After(awsPollEvery):
		}
		if j, err = a.api(ctx, fs.download, "GET", "/api/downloads/"+j.ID, ""); err != nil {
			return job{}, err
		}
	}
	return j, nil
}

// fetchTar downloads a ready job's presigned tar with curl, timing it,
// and checks it is the image's tar.
func (a *awsStack) fetchTar(ctx context.Context, c *benchCase, j job, r *awsResult) error {
	if !strings.Contains(j.URL, "X-Amz-Signature=") || !strings.HasPrefix(j.URL, a.svc.S3.Endpoint()+"/") {
		return fmt.Errorf("job %s is ready with %q, not a presigned URL of the bucket", j.ID, j.URL)
	}
	out := filepath.Join(a.env.outDir, "aws-"+c.name+".tar")
	os.Remove(out)
	defer os.Remove(out)
	syscall.Sync()
	u, err := a.env.timed(ctx, "curl", "-fsS", "--no-progress-meter", "-o", out, j.URL)
	if err != nil {
		return err
	}
	r.fetch = u.wall
	if r.tarSize, err = verifyTar(out, c, true); err != nil {
		return fmt.Errorf("checking the tar: %w", err)
	}
	if r.tarSize != j.TotalBytes {
		return fmt.Errorf("the presigned tar has %d bytes, the job says %d", r.tarSize, j.TotalBytes)
	}
	return nil
}

// pollTasks plays one poller of the event source mapping until stop is
// closed. A failed invocation ends the measurement: with the template's
// visibility timeout its message would come back only after 20 minutes.
func pollTasks(ctx context.Context, m *sqsmapping.Mapping, stop <-chan struct{}, invocations *atomic.Int64) error {
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		r, err := m.Poll(ctx)
		if err != nil {
			return err
		}
		if r.Received > 0 {
			invocations.Add(1)
		}
		if r.Err != nil || len(r.Failed) > 0 {
			return fmt.Errorf("an assemble invocation failed %d of %d tasks: %v", len(r.Failed), r.Received, r.Err)
		}
	}
}

// api plays API Gateway: one HTTP API (payload 2.0) event to f, whose
// answer must be a job (or, for the health check, any 200).
func (a *awsStack) api(ctx context.Context, f *lambdatest.Function, method, target, body string) (job, error) {
	path, _, _ := strings.Cut(target, "?")
	var j job
	res, err := f.HTTP(ctx, method, target, body)
	if err != nil {
		return j, fmt.Errorf("%s %s: %w", method, target, err)
	}
	if res.StatusCode != 200 && res.StatusCode != 202 {
		return j, fmt.Errorf("%s %s: %d %s", method, target, res.StatusCode, res.Body)
	}
	if path == "/api/health" {
		return j, nil
	}
	if err := json.Unmarshal([]byte(res.Body), &j); err != nil {
		return j, fmt.Errorf("%s %s: decoding %q: %w", method, target, res.Body, err)
	}
	return j, nil
}

// cpuTimes is user+sys so far of the processes a job runs on.
type cpuTimes struct {
	assemble, download, s3, db time.Duration
}

func (a *awsStack) cpuSnapshot(fs *awsFunctions) (cpuTimes, error) {
	var t cpuTimes
	for _, f := range fs.assemble {
		pid, err := bootstrapPid(f)
		if err != nil {
			return t, err
		}
		d, err := procCPU(pid)
		if err != nil {
			return t, err
		}
		t.assemble += d
	}
	pid, err := bootstrapPid(fs.download)
	if err != nil {
		return t, err
	}
	if t.download, err = procCPU(pid); err != nil {
		return t, err
	}
	// versitygw and dynalite's node are this program's children.
	for _, p := range daemon.Descendants(os.Getpid()) {
		var dst *time.Duration
		switch procComm(p) {
		case "versitygw":
			dst = &t.s3
		case "node":
			dst = &t.db
		default:
			continue
		}
		d, err := procCPU(p)
		if err != nil {
			return t, err
		}
		*dst += d
	}
	return t, nil
}

// bootstrapPid is the function process the emulator runs (once invoked).
func bootstrapPid(f *lambdatest.Function) (int, error) {
	for _, p := range daemon.Descendants(f.Pid()) {
		if procComm(p) == "bootstrap" {
			return p, nil
		}
	}
	return 0, fmt.Errorf("the emulator (pid %d) runs no bootstrap", f.Pid())
}

func procComm(pid int) string {
	return strings.TrimSpace(readFile(fmt.Sprintf("/proc/%d/comm", pid)))
}

// moduleVersion names a Go-built tool by its main module and version.
func moduleVersion(bin string) string {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return filepath.Base(bin) + " (version unknown)"
	}
	return filepath.Base(bin) + " " + bi.Main.Version
}

func packageVersion(p string) string {
	var pkg struct{ Version string }
	if json.Unmarshal([]byte(readFile(p)), &pkg) != nil || pkg.Version == "" {
		return "unknown"
	}
	return pkg.Version
}

// awsReport renders the generated part of the AWS section.
func awsReport(m machine, a *awsStack, sizes map[string]bootstrapSize, starts map[string][]coldStart, cases []*benchCase, res map[string][]awsResult, local *results, runs int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s by `make bench` in %s: %d runs of each case and of each function's cold start, %d assemble emulator instances polling the task queue.\n\n",
		m.date.Format("2006-01-02 15:04 UTC"), m.duration.Round(time.Second), runs, a.workers)
	writeMachine(&b, m)
	fmt.Fprintf(&b, "Versions: %s, registry %s.\n\n", strings.Join(a.versions, ", "), strings.TrimPrefix(commandOutput(context.Background(), a.env.toolEnv, a.env.regBin, "--version"), a.env.regBin+" "))

	b.WriteString("| image | request → job ready with a presigned URL, median (best) | presigned URL → tar on disk (curl), median | assemble invocations | assemble worker peak RSS (VmHWM), max | CPU user+sys until ready, median |\n")
	b.WriteString("|---|---|---|---|---|---|\n")
	for _, c := range cases {
		rs := res[c.name]
		if len(rs) == 0 {
			continue
		}
		ready := pickAWS(rs, func(r awsResult) time.Duration { return r.ready })
		fmt.Fprintf(&b, "| %s | %s (%s) | %s | %d | %s | assemble %s, download %s, versitygw %s, dynalite %s |\n",
			c.title, secs(median(ready)), secs(slices.Min(ready)),
			secs(median(pickAWS(rs, func(r awsResult) time.Duration { return r.fetch }))),
			rs[0].invocations, mib(maxOf(rs, func(r awsResult) int64 { return r.peakRSS })),
			secs(median(pickAWS(rs, func(r awsResult) time.Duration { return r.cpuAssemble }))),
			secs(median(pickAWS(rs, func(r awsResult) time.Duration { return r.cpuDownload }))),
			secs(median(pickAWS(rs, func(r awsResult) time.Duration { return r.cpuS3 }))),
			secs(median(pickAWS(rs, func(r awsResult) time.Duration { return r.cpuDB }))))
	}
	b.WriteString("\n")
	if local != nil {
		var parts []string
		for _, c := range cases {
			if rs := local.get(c.name, "tarport"); len(rs) > 0 {
				parts = append(parts, fmt.Sprintf("%s %s", c.name, secs(median(pick(rs, func(r result) time.Duration { return r.ready })))))
			}
		}
		if len(parts) > 0 {
			fmt.Fprintf(&b, "For comparison, the local server's job ready (median, same run, table above): %s.\n\n", strings.Join(parts, ", "))
		}
	}

	b.WriteString("| function | bootstrap, linux/arm64 as `sam build` makes it | zipped | init under the emulator (INIT REPORT), median (min–max) | first invocation − warm invocation, median |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, id := range a.functions {
		cs := starts[id]
		if len(cs) == 0 {
			continue
		}
		inits := pick(cs, func(c coldStart) time.Duration { return c.init })
		extra := pick(cs, func(c coldStart) time.Duration { return c.first - c.warm })
		fmt.Fprintf(&b, "| %s | %s | %s | %.1f ms (%.1f–%.1f) | %.1f ms |\n",
			id, mib1(sizes[id].bytes), mib1(sizes[id].zipped), ms(median(inits)), ms(slices.Min(inits)), ms(slices.Max(inits)), ms(median(extra)))
	}
	return strings.TrimRight(b.String(), "\n")
}

func mib1(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func pickAWS(rs []awsResult, f func(awsResult) time.Duration) []time.Duration {
	out := make([]time.Duration, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}
