package lambdaapp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/awslabs/goformation/v7/intrinsics"

	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/lambdatest"
	"github.com/tarport/tarport/shared/testkit/moto"
	"github.com/tarport/tarport/shared/testkit/regtest"
	"github.com/tarport/tarport/shared/testkit/sqsmapping"
	"github.com/tarport/tarport/shared/testkit/tarcheck"
)

// rolePolicies reads the inline policies of role in template.yaml, with
// its references resolved to the given values (logical id or "Id.Attr" to
// value) and conditions to the given truths.
func rolePolicies(t *testing.T, role string, values map[string]string, conditions map[string]bool) []string {
	t.Helper()
	root, err := daemon.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile(root + "/template.yaml")
	if err != nil {
		t.Fatal(err)
	}
	long, err := intrinsics.ProcessYAML(src, &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		t.Fatal(err)
	}
	var tpl map[string]any
	if err := json.Unmarshal(long, &tpl); err != nil {
		t.Fatal(err)
	}
	res, _ := tpl["Resources"].(map[string]any)[role].(map[string]any)
	props, _ := res["Properties"].(map[string]any)
	var docs []string
	for _, p := range props["Policies"].([]any) {
		doc := resolve(t, p.(map[string]any)["PolicyDocument"], values, conditions)
		b, _ := json.Marshal(doc)
		docs = append(docs, string(b))
	}
	return docs
}

var subVar = regexp.MustCompile(`\$\{([^}]+)\}`)

// resolve evaluates the intrinsics a role policy uses: Ref, GetAtt, Sub
// and If (AWS::NoValue drops a list element).
func resolve(t *testing.T, v any, values map[string]string, conditions map[string]bool) any {
	t.Helper()
	lookup := func(name string) string {
		val, ok := values[name]
		if !ok {
			t.Fatalf("the policy names %s, which the test has no value for", name)
		}
		return val
	}
	switch v := v.(type) {
	case []any:
		var out []any
		for _, e := range v {
			if r := resolve(t, e, values, conditions); r != nil {
				out = append(out, r)
			}
		}
		return out
	case map[string]any:
		if len(v) == 1 {
			for fn, arg := range v {
				switch fn {
				case "Ref":
					if arg == "AWS::NoValue" {
						return nil
					}
					return lookup(arg.(string))
				case "Fn::GetAtt":
					if l, ok := arg.([]any); ok {
						return lookup(l[0].(string) + "." + l[1].(string))
					}
					return lookup(arg.(string))
				case "Fn::Sub":
					return subVar.ReplaceAllStringFunc(arg.(string), func(m string) string { return lookup(m[2 : len(m)-1]) })
				case "Fn::If":
					l := arg.([]any)
					if conditions[l[0].(string)] {
						return resolve(t, l[1], values, conditions)
					}
					return resolve(t, l[2], values, conditions)
				}
			}
		}
		out := map[string]any{}
		for k, e := range v {
			out[k] = resolve(t, e, values, conditions)
		}
		return out
	}
	return v
}

// TestRolesConfineTheFunctions: with moto enforcing IAM on S3 and SQS, the
// download and assemble functions run a whole download each under
// credentials holding exactly its role's policy from template.yaml, and
// calls outside a role's policy are refused. (moto checks S3 and SQS by
// resource; its DynamoDB, and dynalite here, check nothing, and Secrets
// Manager is not used by the test stack.)
func TestRolesConfineTheFunctions(t *testing.T) {
	t.Parallel()
	st := newStack(t)
	m := moto.Start(t)
	ctx := context.Background()
	root := m.Config()

	// The stack's S3 and SQS on moto, made before enforcement starts.
	bucket := m.CreateBucket(t)
	dlqURL := m.CreateQueue(t, "iam-dlq", nil)
	tasksURL := m.CreateQueue(t, "iam-tasks", map[string]string{
		"VisibilityTimeout": "960",
		"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"3"}`, moto.QueueARN("iam-dlq")),
	})
	values := map[string]string{
		"AWS::Partition": "aws", "AWS::Region": moto.Region, "AWS::AccountId": moto.Account, "AWS::StackName": "tarport",
		"DataBucket.Arn":       "arn:aws:s3:::" + bucket,
		"TaskQueue.Arn":        moto.QueueARN("iam-tasks"),
		"DeadLetterQueue.Arn":  moto.QueueARN("iam-dlq"),
		"Table.Arn":            "arn:aws:dynamodb:" + moto.Region + ":" + moto.Account + ":table/" + st.table,
		"TaskKeySecret":        "arn:aws:secretsmanager:" + moto.Region + ":" + moto.Account + ":secret:task-key-AbCdEf",
		"OriginSecret":         "arn:aws:secretsmanager:" + moto.Region + ":" + moto.Account + ":secret:origin-AbCdEf",
		"DownloadLogGroup.Arn": "arn:aws:logs:" + moto.Region + ":" + moto.Account + ":log-group:/aws/lambda/tarport-download",
		"AssembleLogGroup.Arn": "arn:aws:logs:" + moto.Region + ":" + moto.Account + ":log-group:/aws/lambda/tarport-assemble",
		"SearchLogGroup.Arn":   "arn:aws:logs:" + moto.Region + ":" + moto.Account + ":log-group:/aws/lambda/tarport-search",
		"AccessTokenSecret":    "arn:aws:secretsmanager:" + moto.Region + ":" + moto.Account + ":secret:token-AbCdEf",
		"DockerHubSecretArn":   "",
		"LinkSignerRole.Arn":   "arn:aws:iam::" + moto.Account + ":role/tarport-links-" + moto.Region,
	}
	// SQS authorizes SendMessageBatch by sqs:SendMessage; moto checks it as
	// an action of its own, so the test grants that name too.
	motoBatchSend := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:SendMessageBatch","Resource":"` + moto.QueueARN("iam-tasks") + `"}]}`
	users := map[string][]string{
		"download": append(rolePolicies(t, "DownloadRole", values, nil), motoBatchSend),
		"assemble": append(rolePolicies(t, "AssembleRole", values, nil), motoBatchSend),
		// Lambda's own poller plays the event source mappings.
		"lambda-service": {`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sqs:*","Resource":"*"}]}`},
	}
	keys := map[string]aws.Credentials{}
	ic := iam.NewFromConfig(root)
	for user, docs := range users {
		if _, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(user)}); err != nil {
			t.Fatal(err)
		}
		for i, doc := range docs {
			p, err := ic.CreatePolicy(ctx, &iam.CreatePolicyInput{PolicyName: aws.String(fmt.Sprintf("%s-%d", user, i)), PolicyDocument: aws.String(doc)})
			if err != nil {
				t.Fatalf("policy of %s: %v\n%s", user, err, doc)
			}
			if _, err := ic.AttachUserPolicy(ctx, &iam.AttachUserPolicyInput{UserName: aws.String(user), PolicyArn: p.Policy.Arn}); err != nil {
				t.Fatal(err)
			}
		}
		k, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(user)})
		if err != nil {
			t.Fatal(err)
		}
		keys[user] = aws.Credentials{AccessKeyID: aws.ToString(k.AccessKey.AccessKeyId), SecretAccessKey: aws.ToString(k.AccessKey.SecretAccessKey)}
	}
	// From here on, moto authenticates and authorizes every call.
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, m.URL+"/moto-api/reset-auth", strings.NewReader("0"))
	if res, err := http.DefaultClient.Do(req); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("turning moto's IAM on: %v", err)
	}
	as := func(user string) aws.Config {
		c := m.Config()
		c.Credentials = credentials.NewStaticCredentialsProvider(keys[user].AccessKeyID, keys[user].SecretAccessKey, "")
		return c
	}
	// A refusal is AccessDenied; moto's SQS answers its JSON protocol's
	// refusals in XML, so there the 403 is what the SDK can read.
	refused := func(what string, err error) {
		t.Helper()
		var ae smithy.APIError
		var re *awshttp.ResponseError
		if !(errors.As(err, &ae) && strings.Contains(ae.ErrorCode(), "AccessDenied")) && !(errors.As(err, &re) && re.HTTPStatusCode() == http.StatusForbidden) {
			t.Errorf("%s: %v, want AccessDenied", what, err)
		}
	}
	// Outside the roles: the download function writes no layer entry and
	// takes no task; the assemble function deletes no cached layer.
	dl := s3.NewFromConfig(as("download"), func(o *s3.Options) { o.UsePathStyle = true })
	_, err := dl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("entries/x"), Body: strings.NewReader("x")})
	refused("download role: PutObject entries/", err)
	_, err = sqs.NewFromConfig(as("download")).ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(tasksURL)})
	refused("download role: ReceiveMessage on the task queue", err)
	asm := s3.NewFromConfig(as("assemble"), func(o *s3.Options) { o.UsePathStyle = true })
	_, err = asm.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String("entries/x")})
	refused("assemble role: DeleteObject entries/", err)

	// Inside them: a whole download, its 9 MiB layer split in two range
	// tasks (staging/ upload parts, ranged GETs to verify it, the move to
	// entries/).
	pushed := regtest.PushImage(t, st.reg, "team/iam", "v1", regtest.ImageSpec{Layers: []regtest.LayerSpec{{Size: 9 << 20, Random: true}, {Size: 4 << 10, Random: true}}})
	env := func(user string) []string {
		return append(st.env[:len(st.env):len(st.env)],
			"AWS_ENDPOINT_URL_S3="+m.URL,
			"AWS_ENDPOINT_URL_SQS="+m.URL,
			"AWS_ACCESS_KEY_ID="+keys[user].AccessKeyID,
			"AWS_SECRET_ACCESS_KEY="+keys[user].SecretAccessKey,
			"TARPORT_BUCKET="+bucket,
			"TARPORT_QUEUE_URL="+tasksURL,
			"TARPORT_DLQ_ARN="+moto.QueueARN("iam-dlq"),
			"TARPORT_SPLIT_ABOVE=6MiB",
			"TARPORT_RANGE_SIZE=5MiB",
		)
	}
	download := lambdatest.Start(t, lambdatest.Build(t, "DownloadFunction"), lambdatest.Options{Env: env("download"), Timeout: 29 * time.Second, Name: "iam-download"})
	assemble := lambdatest.Start(t, lambdatest.Build(t, "AssembleFunction"), lambdatest.Options{Env: env("assemble"), Timeout: 2 * time.Minute, Name: "iam-assemble"})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("download output:\n%s\nassemble output:\n%s", download.Log(), assemble.Log())
		}
	})
	res, err := download.HTTP(ctx, "POST", "/api/downloads", fmt.Sprintf(`{"image":%q}`, pushed.Ref))
	if err != nil || res.StatusCode != http.StatusAccepted {
		t.Fatalf("create: %v %d %s", err, res.StatusCode, res.Body)
	}
	job := decodeJob(t, res)
	poller := sqs.NewFromConfig(as("lambda-service"))
	invoke := func(ctx context.Context, ev events.SQSEvent) (events.SQSEventResponse, error) {
		var out events.SQSEventResponse
		err := assemble.Invoke(ctx, ev, &out)
		return out, err
	}
	invocations, err := sqsmapping.Drain(ctx,
		&sqsmapping.Mapping{Client: poller, QueueURL: tasksURL, Invoke: invoke, BatchSize: 1, Timeout: 2 * time.Minute},
		&sqsmapping.Mapping{Client: poller, QueueURL: dlqURL, Invoke: invoke, Timeout: 2 * time.Minute},
	)
	if err != nil {
		t.Fatal(err)
	}
	// Two range tasks, the verify task and the small layer's task at least.
	t.Logf("%d task invocations", invocations)
	if invocations < 4 {
		t.Errorf("%d task invocations: the big layer was not split", invocations)
	}
	res, err = download.HTTP(ctx, "GET", "/api/downloads/"+job.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	job = decodeJob(t, res)
	if job.Status != "ready" || job.URL == "" {
		t.Fatalf("under the roles' policies the job ended %s: %s", job.Status, res.Body)
	}
	// The tar, read as the download role may (moto answers presigned GETs
	// 500 while it enforces IAM; versitygw's tests cover the links).
	link, err := url.Parse(job.URL)
	if err != nil {
		t.Fatal(err)
	}
	key := strings.TrimPrefix(link.Path, "/"+bucket+"/")
	obj, err := dl.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("reading the tar %s as the download role: %v", key, err)
	}
	defer obj.Body.Close()
	path := filepath.Join(t.TempDir(), "iam.tar")
	f, err := os.Create(path)
	if err == nil {
		_, err = io.Copy(f, obj.Body)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if c := tarcheck.Structure(t, path); c.Size != job.TotalBytes {
		t.Fatalf("tar of %d bytes, want %d", c.Size, job.TotalBytes)
	}
	tarcheck.Skopeo(t, path)
}
