// Package lambdaapp wires tarport's adapters for AWS Lambda: S3 objects,
// the DynamoDB table, the SQS task queue and Secrets Manager, from the
// environment template.yaml sets. Each functions/<name>/main.go is one
// call to Main with the handler it serves; the local server's twin is
// infra/local/app.
package lambdaapp

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/tarport/tarport/shared/discovery"
	"github.com/tarport/tarport/shared/dockerhub"
	"github.com/tarport/tarport/shared/download"
	"github.com/tarport/tarport/shared/dynamo"
	"github.com/tarport/tarport/shared/httpapi"
	"github.com/tarport/tarport/shared/lambdahttp"
	"github.com/tarport/tarport/shared/limits"
	"github.com/tarport/tarport/shared/metrics"
	"github.com/tarport/tarport/shared/metrics/emf"
	"github.com/tarport/tarport/shared/registry"
	"github.com/tarport/tarport/shared/s3store"
	"github.com/tarport/tarport/shared/settings"
	"github.com/tarport/tarport/shared/sqsqueue"
)

// The verify task reads split layers with ranged reads where the store
// offers them (an optional port: without it, one stream).
var _ download.RangedObjects = (*s3store.Store)(nil)

// App is what every function starts from: settings, a logger and the AWS
// configuration (credentials, region, and endpoints such as
// AWS_ENDPOINT_URL_S3 in tests).
type App struct {
	Settings settings.Settings
	Log      *slog.Logger
	AWS      aws.Config
	// Metrics are written as EMF lines when each invocation ends.
	Metrics *metrics.Metrics
	emf     *emf.Sink

	limiterOnce sync.Once
	limiter     *limits.Limiter

	taskKeyOnce sync.Once
	taskKeyVal  []byte
	taskKeyErr  error
}

// Main builds a function's handler with build and serves it; a function
// that cannot start logs why and exits, which Lambda reports as an init
// error.
func Main(build func(ctx context.Context, a *App) (any, error)) {
	ctx := context.Background()
	a, err := New(ctx)
	if err == nil {
		var h any
		if h, err = build(ctx, a); err == nil {
			lambda.Start(flushing{lambda.NewHandler(h), a})
			return
		}
	}
	NewLogger(os.Stdout, slog.LevelInfo).Error("starting the function", "err", err)
	os.Exit(1)
}

// flushing writes an invocation's metrics when it ends, on stdout among
// the logs, where CloudWatch reads Embedded Metric Format lines.
type flushing struct {
	lambda.Handler
	a *App
}

func (f flushing) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	// An instance runs one invocation at a time: its log lines carry its id.
	if lc, ok := lambdacontext.FromContext(ctx); ok {
		invocation.Store(lc.AwsRequestID)
		defer invocation.Store("")
	}
	out, err := f.Handler.Invoke(ctx, payload)
	if ferr := f.a.emf.Flush(os.Stdout, time.Now()); ferr != nil {
		f.a.Log.Warn("writing metrics", "err", ferr)
	}
	return out, err
}

// NewLogger writes JSON lines as Lambda's log-level filter reads them
// (LogFormat JSON, ApplicationLogLevel): the level under "level", and the
// time as RFC 3339 under "timestamp". A line whose timestamp Lambda cannot
// find counts as INFO, and a WARN filter would drop every error.
func NewLogger(w io.Writer, level slog.Level) *slog.Logger {
	return slog.New(withRequestID{slog.NewJSONHandler(w, &slog.HandlerOptions{
		Level: level,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			// The record's own time (our code logs no other time "time").
			if len(groups) == 0 && a.Key == slog.TimeKey && a.Value.Kind() == slog.KindTime {
				a.Key = "timestamp"
			}
			return a
		},
	})})
}

// invocation is the id of the invocation running, for the log lines.
var invocation atomic.Value

// withRequestID adds the running invocation's id to every line
// ("requestId", as Lambda's own lines name it).
type withRequestID struct{ slog.Handler }

func (h withRequestID) Handle(ctx context.Context, r slog.Record) error {
	if id, _ := invocation.Load().(string); id != "" {
		r.AddAttrs(slog.String("requestId", id))
	}
	return h.Handler.Handle(ctx, r)
}

func (h withRequestID) WithAttrs(as []slog.Attr) slog.Handler {
	return withRequestID{h.Handler.WithAttrs(as)}
}

func (h withRequestID) WithGroup(name string) slog.Handler {
	return withRequestID{h.Handler.WithGroup(name)}
}

// New reads the settings and the AWS configuration.
func New(ctx context.Context) (*App, error) {
	s, err := settings.FromEnv()
	if err != nil {
		return nil, err
	}
	if limit, ok := memoryLimit(os.Getenv); ok {
		debug.SetMemoryLimit(limit)
	}
	// Lambda sends stdout to the function's log group; JSON is what its
	// LogFormat JSON and Logs Insights read.
	log := NewLogger(os.Stdout, s.LogLevel)
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading the AWS configuration: %w", err)
	}
	// Metric lines carry the configured level, so the filter keeps them.
	sink := emf.New(s.LogLevel.String())
	return &App{Settings: s, Log: log, AWS: cfg, Metrics: metrics.New(sink), emf: sink}, nil
}

// Parts says which part of the HTTP API a function serves.
type Parts int

const (
	Discovery Parts = 1 << iota // search, image details, popular
	Downloads                   // jobs, status, pull
)

// HTTPHandler is an API Gateway HTTP API (payload 2.0) handler.
type HTTPHandler = func(ctx context.Context, ev events.APIGatewayV2HTTPRequest) (events.APIGatewayV2HTTPResponse, error)

// HTTP returns the handler of an API function: the router the local
// server runs, with only the parts this function serves (and holds
// permissions for).
func (a *App) HTTP(ctx context.Context, parts Parts) (HTTPHandler, error) {
	// Links are S3's; a public URL, when the operator gives one, is what
	// job-creating requests' Origin must be.
	token, err := a.secretOr(ctx, a.Settings.AccessTokenARN, a.Settings.AccessToken)
	if err != nil {
		return nil, err
	}
	origin, err := a.secretOr(ctx, a.Settings.OriginSecretARN, a.Settings.OriginSecret)
	if err != nil {
		return nil, err
	}
	if err := a.requireAWS("TARPORT_TABLE"); err != nil {
		return nil, err
	}
	opts := httpapi.Options{
		Metrics:      a.Metrics,
		Limits:       a.limits(),
		AccessToken:  token,
		OriginSecret: origin,
		PublicURL:    a.Settings.PublicURL,
		Logger:       a.Log,
	}
	if parts&Downloads != 0 {
		svc, err := a.downloads(ctx)
		if err != nil {
			return nil, err
		}
		opts.Downloads = svc
	}
	if parts&Discovery != 0 {
		disc, err := a.discovery(ctx)
		if err != nil {
			return nil, err
		}
		opts.Discovery = disc
	}
	return lambdahttp.Handler(httpapi.New(opts), a.Log), nil
}

// Assemble returns the handler of the task queue and its dead-letter
// queue: each record is one layer task; the last one stitches the tar.
func (a *App) Assemble(ctx context.Context) (func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error), error) {
	svc, err := a.downloads(ctx)
	if err != nil {
		return nil, err
	}
	key, err := a.taskKey(ctx)
	if err != nil {
		return nil, err
	}
	if a.Settings.DLQARN == "" {
		return nil, fmt.Errorf("TARPORT_DLQ_ARN is not set: dead-lettered tasks could not fail their jobs")
	}
	return sqsqueue.Handler(svc.RunTask, svc.Abandon, sqsqueue.HandlerOptions{
		Key:           key,
		DeadLetterARN: a.Settings.DLQARN,
		Log:           a.Log,
	}), nil
}

// Warm returns the scheduled handler: it refreshes the discovery caches
// and starts jobs for the hot images, whose layers then sit in the entry
// cache when people ask for them.
func (a *App) Warm(ctx context.Context) (func(ctx context.Context, ev events.EventBridgeEvent) error, error) {
	disc, err := a.discovery(ctx)
	if err != nil {
		return nil, err
	}
	var svc *download.Service
	if len(a.Settings.HotImages) > 0 {
		if svc, err = a.downloads(ctx); err != nil {
			return nil, err
		}
	}
	return func(ctx context.Context, _ events.EventBridgeEvent) error {
		start := time.Now()
		err := disc.Warm(ctx)
		if err != nil {
			a.Log.Warn("warming the discovery cache", "err", err)
		}
		for _, hot := range a.Settings.HotImages {
			v, cerr := svc.Create(ctx, download.Request{Image: hot.Image, Platform: hot.Platform})
			if cerr != nil {
				a.Log.Warn("pre-fetching a hot image", "image", hot.Image, "platform", hot.Platform, "err", cerr)
				continue
			}
			a.Log.Info("pre-fetching a hot image", "image", hot.Image, "platform", hot.Platform, "job", v.ID, "status", v.Status)
		}
		a.Log.Info("warm done", "took", time.Since(start).Round(time.Millisecond))
		// Only the cache refresh failing is worth a failed invocation (and
		// an alarm): a hot image may come and go.
		return err
	}, nil
}

func (a *App) requireAWS(names ...string) error {
	values := map[string]string{
		"TARPORT_BUCKET":    a.Settings.Bucket,
		"TARPORT_TABLE":     a.Settings.Table,
		"TARPORT_QUEUE_URL": a.Settings.QueueURL,
	}
	var missing []string
	for _, n := range names {
		if values[n] == "" {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%s not set (template.yaml sets them)", strings.Join(missing, ", "))
	}
	return nil
}

// downloads builds the download service on S3, DynamoDB and SQS.
func (a *App) downloads(ctx context.Context) (*download.Service, error) {
	if err := a.requireAWS("TARPORT_BUCKET", "TARPORT_TABLE", "TARPORT_QUEUE_URL"); err != nil {
		return nil, err
	}
	s3c := s3.NewFromConfig(a.AWS, func(o *s3.Options) {
		// A verify task reads a split layer with 8 ranged GETs at once,
		// and an assemble function runs up to 4 tasks: keep those
		// connections rather than handshake again for every range.
		if bc, ok := o.HTTPClient.(*awshttp.BuildableClient); ok {
			o.HTTPClient = bc.WithTransportOptions(func(t *http.Transport) { t.MaxIdleConnsPerHost = 64 })
		}
	})
	presign, signer := a.linkSigner(s3c)
	store := s3store.New(s3c, presign, a.Settings.Bucket, s3store.Options{Credentials: signer})
	reg, err := a.registry(ctx, store)
	if err != nil {
		return nil, err
	}
	jobs := dynamo.NewJobs(dynamodb.NewFromConfig(a.AWS), a.Settings.Table)
	svc := download.New(reg, store, store, jobs, store, download.Config{
		LinkTTL:       a.Settings.PresignTTL,
		MaxImageBytes: a.Settings.MaxImageBytes,
		// Each progress write is a DynamoDB write (one unit: a layer's item).
		ProgressEvery: time.Second,
		// A task must end within Lambda's 15 minutes: big layers are
		// fetched by range tasks, in parallel.
		SplitAbove: a.Settings.SplitAbove,
		RangeSize:  a.Settings.RangeSize,
		SplitPoll:  a.Settings.SplitPoll,
	}, a.Log)
	key, err := a.taskKey(ctx)
	if err != nil {
		return nil, err
	}
	q, err := sqsqueue.New(sqs.NewFromConfig(a.AWS), a.Settings.QueueURL, sqsqueue.Options{Key: key})
	if err != nil {
		return nil, err
	}
	svc.SetQueue(q)
	svc.SetQuota(a.limits())
	svc.SetMetrics(a.Metrics)
	return svc, nil
}

func (a *App) registry(ctx context.Context, cache registry.MetaCache) (*registry.Client, error) {
	user, token, err := a.dockerHubAccount(ctx)
	if err != nil {
		return nil, err
	}
	return registry.New(registry.Options{
		DockerHubRegistry: a.Settings.DockerHubRegistry,
		Insecure:          a.Settings.InsecureRegistries,
		DockerHubUsername: user,
		DockerHubToken:    token,
		MaxImageBytes:     a.Settings.MaxImageBytes,
		IdleTimeout:       a.Settings.BlobIdleTimeout,
		MinRate:           a.Settings.BlobMinRate,
		Cache:             cache,
		Metrics:           a.Metrics,
		Logger:            a.Log,
	}), nil
}

// discovery builds the discovery service with its cache in the table.
// Image details of other registries read them directly (no meta cache:
// this function holds no bucket permissions).
func (a *App) discovery(ctx context.Context) (*discovery.Service, error) {
	if err := a.requireAWS("TARPORT_TABLE"); err != nil {
		return nil, err
	}
	reg, err := a.registry(ctx, nil)
	if err != nil {
		return nil, err
	}
	cfg := discovery.DefaultConfig()
	cfg.Logger = a.Log
	cfg.Registry = reg
	cache := dynamo.NewCache(dynamodb.NewFromConfig(a.AWS), a.Settings.Table)
	hub := dockerhub.New(a.Settings.HubAPI, &http.Client{Timeout: 20 * time.Second})
	return discovery.New(hub, cache, cfg), nil
}

// linkSigner is the presign client and its credentials. A Lambda's own
// role credentials say nothing of when they expire, and a link dies with
// them; with TARPORT_LINK_SIGNER_ROLE_ARN links are signed by a session of
// that role (an hour, the most a role assumed from a role gets), which
// s3store.Sign renews when less than 30 minutes of it are left, so every
// link lives at least 29 minutes (or its PresignTTL) and says when it ends.
// The cache reports the session's real expiry (no ExpiryWindow): Sign
// decides when to renew.
func (a *App) linkSigner(s3c *s3.Client) (*s3.PresignClient, aws.CredentialsProvider) {
	arn := a.Settings.LinkSignerRoleARN
	if arn == "" {
		return s3.NewPresignClient(s3c), a.AWS.Credentials
	}
	assume := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(a.AWS), arn, func(o *stscreds.AssumeRoleOptions) {
		o.RoleSessionName = "tarport-links"
		o.Duration = time.Hour
	})
	creds := aws.NewCredentialsCache(assume)
	signing := s3.NewFromConfig(a.AWS, func(o *s3.Options) { o.Credentials = creds })
	return s3.NewPresignClient(signing), creds
}

// limits counts requests and bytes in the table, so every instance of
// every function counts against the same numbers. One limiter serves the
// router and the download service alike.
func (a *App) limits() *limits.Limiter {
	a.limiterOnce.Do(func() {
		a.limiter = limits.New(dynamo.NewLimits(dynamodb.NewFromConfig(a.AWS), a.Settings.Table), limits.Rules{
			RatePerMinute: a.Settings.RateLimitPerMinute,
			ClientPerDay:  a.Settings.ClientQuotaPerDay,
			BudgetPerDay:  a.Settings.BudgetPerDay,
		}, nil).WithMetrics(a.Metrics)
	})
	return a.limiter
}

// secretOr reads the secret at arn when one is given, else returns plain.
func (a *App) secretOr(ctx context.Context, arn, plain string) (string, error) {
	if arn == "" {
		return plain, nil
	}
	return a.secret(ctx, arn)
}

func (a *App) secret(ctx context.Context, arn string) (string, error) {
	out, err := secretsmanager.NewFromConfig(a.AWS).GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(arn)})
	if err != nil {
		return "", fmt.Errorf("reading secret %s: %w", arn, err)
	}
	if out.SecretString == nil {
		return "", fmt.Errorf("reading secret %s: it holds no string", arn)
	}
	return *out.SecretString, nil
}

// taskKey is the key that seals private jobs' credentials in queue
// messages: the SHA-256 of the secret (template.yaml generates a random
// string), or of TARPORT_TASK_KEY where no Secrets Manager is at hand.
// With neither, private images cannot be downloaded (anonymous ones can).
func (a *App) taskKey(ctx context.Context) ([]byte, error) {
	a.taskKeyOnce.Do(func() { a.taskKeyVal, a.taskKeyErr = a.readTaskKey(ctx) })
	return a.taskKeyVal, a.taskKeyErr
}

func (a *App) readTaskKey(ctx context.Context) ([]byte, error) {
	material := a.Settings.TaskKey
	if arn := a.Settings.TaskKeySecretARN; arn != "" {
		var err error
		if material, err = a.secret(ctx, arn); err != nil {
			return nil, err
		}
	}
	if material == "" {
		return nil, nil
	}
	sum := sha256.Sum256([]byte(material))
	return sum[:], nil
}

// dockerHubAccount is the service's own Docker Hub account, from its
// secret ({"username","token"}) or the plain settings.
func (a *App) dockerHubAccount(ctx context.Context) (user, token string, err error) {
	arn := a.Settings.DockerHubSecretARN
	if arn == "" {
		return a.Settings.DockerHubUsername, a.Settings.DockerHubToken, nil
	}
	raw, err := a.secret(ctx, arn)
	if err != nil {
		return "", "", err
	}
	var acct struct {
		Username string `json:"username"`
		Token    string `json:"token"`
	}
	if err := json.Unmarshal([]byte(raw), &acct); err != nil || acct.Username == "" || acct.Token == "" {
		// Never the secret's text in an error.
		return "", "", fmt.Errorf("reading secret %s: want JSON {\"username\":...,\"token\":...}", arn)
	}
	return acct.Username, acct.Token, nil
}

// memoryLimit is the Go heap's soft limit on Lambda: 85% of the function's
// memory (AWS_LAMBDA_FUNCTION_MEMORY_SIZE, MB), so the collector works
// harder before the function runs out rather than after (the default
// lets the heap grow to twice what is live). GOMEMLIMIT, when set, wins.
func memoryLimit(getenv func(string) string) (int64, bool) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, false
	}
	mb, err := strconv.ParseInt(getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), 10, 64)
	if err != nil || mb <= 0 {
		return 0, false
	}
	return mb << 20 * 85 / 100, true
}
