// Package awsstack is tarport's AWS services on loopback, as template.yaml
// makes them: S3 on versitygw, DynamoDB on dynalite, SQS on moto with the
// task queue and its dead-letter queue. The Lambda end-to-end tests and
// the bench's AWS path both start it here, so what they measure and what
// they test cannot drift apart.
package awsstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/dynalite"
	"github.com/tarport/tarport/shared/testkit/moto"
	"github.com/tarport/tarport/shared/testkit/s3test"
)

const (
	// TaskQueue and DeadLetterQueue are the queues' names.
	TaskQueue       = "tarport-tasks"
	DeadLetterQueue = "tarport-dlq"
	// VisibilityTimeout is the task queue's (template.yaml): over the
	// assemble function's 900 s.
	VisibilityTimeout = 1200
)

// Services is one running stack.
type Services struct {
	S3       *s3test.Server
	DB       *dynalite.Server
	SQS      *moto.Server
	TasksURL string
	DLQURL   string
	// Bins are the servers' programs, for reporting their versions.
	Bins Bins
}

// Bins are the programs a stack runs.
type Bins struct {
	Versitygw, Node, DynaliteCLI, Moto string
}

// Start runs the stack for t and stops it when t ends; a missing server
// skips t, or fails it under TARPORT_REQUIRE_TOOLS=1.
func Start(t testing.TB) *Services {
	t.Helper()
	s := &Services{S3: s3test.Start(t), DB: dynalite.Start(t), SQS: moto.Start(t)}
	if err := s.queues(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

// Launch is Start without a testing.TB, for the bench: the servers keep
// their data under dir and live until Stop or until ctx is done.
func Launch(ctx context.Context, dir string) (*Services, error) {
	s := &Services{}
	var err error
	if s.Bins, err = findBins(); err != nil {
		return nil, fmt.Errorf("%w (run ./infra/dev/install-deps.sh)", err)
	}
	for _, d := range []string{"s3", "dynalite"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if s.S3, err = s3test.Launch(ctx, s.Bins.Versitygw, filepath.Join(dir, "s3")); err == nil {
		if s.DB, err = dynalite.Launch(ctx, s.Bins.Node, s.Bins.DynaliteCLI, filepath.Join(dir, "dynalite")); err == nil {
			if s.SQS, err = moto.Launch(ctx, s.Bins.Moto); err == nil {
				err = s.queues(ctx)
			}
		}
	}
	if err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

func findBins() (Bins, error) {
	var b Bins
	var errs [4]error
	b.Versitygw, errs[0] = daemon.FindBinary("versitygw")
	b.Node, errs[1] = daemon.FindBinary("node", "nodejs")
	b.DynaliteCLI, errs[2] = dynalite.FindCLI()
	b.Moto, errs[3] = daemon.FindBinary("moto_server")
	return b, errors.Join(errs[:]...)
}

// Stop ends every server that runs. Stopping twice is fine.
func (s *Services) Stop() {
	if s.SQS != nil {
		s.SQS.Stop()
	}
	if s.DB != nil {
		s.DB.Stop()
	}
	if s.S3 != nil {
		s.S3.Stop()
	}
}

// queues makes the dead-letter queue and the task queue redriving to it
// after tarport.QueueDeliveries receives.
func (s *Services) queues(ctx context.Context) error {
	var err error
	if s.DLQURL, err = s.createQueue(ctx, DeadLetterQueue, nil); err != nil {
		return err
	}
	s.TasksURL, err = s.createQueue(ctx, TaskQueue, map[string]string{
		"VisibilityTimeout": strconv.Itoa(VisibilityTimeout),
		"RedrivePolicy":     fmt.Sprintf(`{"deadLetterTargetArn":%q,"maxReceiveCount":"%d"}`, moto.QueueARN(DeadLetterQueue), tarport.QueueDeliveries),
	})
	return err
}

func (s *Services) createQueue(ctx context.Context, name string, attrs map[string]string) (string, error) {
	out, err := s.SQS.SQS().CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name), Attributes: attrs})
	if err != nil {
		return "", fmt.Errorf("creating queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// Env is the functions' environment on this stack, as template.yaml sets
// it, for one bucket and table: the endpoints, the resources and the task
// sealing key.
func (s *Services) Env(bucket, table, taskKey string) []string {
	return append(append(s.DB.Env(), s.S3.Env()...),
		"AWS_ENDPOINT_URL_SQS="+s.SQS.URL,
		"TARPORT_TABLE="+table,
		"TARPORT_BUCKET="+bucket,
		"TARPORT_QUEUE_URL="+s.TasksURL,
		"TARPORT_DLQ_ARN="+moto.QueueARN(DeadLetterQueue),
		"TARPORT_TASK_KEY="+taskKey,
	)
}
