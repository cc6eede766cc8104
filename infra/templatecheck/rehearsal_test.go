package templatecheck

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	dynamotypes "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/tarport/tarport/shared/dynamo"
	"github.com/tarport/tarport/shared/testkit/daemon"
	"github.com/tarport/tarport/shared/testkit/moto"
)

// translateScript runs the SAM transform as `sam deploy` does (the sam CLI
// itself is not installable here), with each function's code at an s3://
// URI in codeBucket, and prints the CloudFormation template.
const translateScript = `
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:  # the template attaches none
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1]).read())
for name, res in template.get("Resources", {}).items():
    if res.get("Type") == "AWS::Serverless::Function":
        res["Properties"]["CodeUri"] = "s3://%s/%s.zip" % (sys.argv[2], name)
json.dump(transform(template, {}, NoManagedPolicies()), sys.stdout)
`

// motoCannot are the resource types moto 5.2.1's CloudFormation does not
// create: it records them as placeholders (Ref works, GetAtt does not).
var motoCannot = []string{
	"AWS::CloudWatch::Alarm", "AWS::SecretsManager::Secret", "AWS::S3::BucketPolicy",
	"AWS::CloudFront::Distribution", "AWS::CloudFront::OriginAccessControl", "AWS::CloudFront::ResponseHeadersPolicy",
	"AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage",
}

// TestDeployRehearsal: the template, translated by the SAM transform,
// deploys with its default parameters on moto's CloudFormation: every
// resource of a type moto can create reaches CREATE_COMPLETE, and the
// table and queues it made are the ones the code expects.
func TestDeployRehearsal(t *testing.T) {
	t.Parallel()
	py := moto.Python(t)
	m := moto.Start(t)
	root, err := daemon.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "translate.py")
	if err := os.WriteFile(script, []byte(translateScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), py, script, filepath.Join(root, "template.yaml"), "code")
	cmd.Env = append(os.Environ(), "AWS_DEFAULT_REGION="+moto.Region)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	translated, err := cmd.Output()
	if err != nil {
		t.Fatalf("the SAM transform: %v\n%s", err, stderr.String())
	}
	var tpl struct {
		Resources map[string]struct {
			Type      string
			Condition string
		}
	}
	if err := json.Unmarshal(translated, &tpl); err != nil {
		t.Fatal(err)
	}

	ctx := t.Context()
	cfg := m.Config()
	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	if _, err := s3c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("code")}); err != nil {
		t.Fatal(err)
	}
	code := functionZip(t)
	for name, r := range tpl.Resources {
		if r.Type == "AWS::Lambda::Function" {
			if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("code"), Key: aws.String(name + ".zip"), Body: bytes.NewReader(code)}); err != nil {
				t.Fatal(err)
			}
		}
	}

	cfn := cloudformation.NewFromConfig(cfg)
	if _, err := cfn.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName:    aws.String("tarport"),
		TemplateBody: aws.String(string(translated)),
		Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityIam, cfntypes.CapabilityCapabilityAutoExpand},
	}); err != nil {
		t.Fatalf("CreateStack: %v", err)
	}
	// With the default parameters, only the budget alarm's condition holds.
	want := map[string]string{}
	for name, r := range tpl.Resources {
		if r.Condition == "" || r.Condition == "HasBudgetAlarm" {
			want[name] = r.Type
		}
	}
	got := map[string]cfntypes.StackResourceSummary{}
	deadline := time.Now().Add(time.Minute)
	for {
		clear(got)
		pending := false
		p := cloudformation.NewListStackResourcesPaginator(cfn, &cloudformation.ListStackResourcesInput{StackName: aws.String("tarport")})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("ListStackResources: %v", err)
			}
			for _, r := range page.StackResourceSummaries {
				got[aws.ToString(r.LogicalResourceId)] = r
				pending = pending || strings.HasSuffix(string(r.ResourceStatus), "_IN_PROGRESS")
			}
		}
		if !pending || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	created := 0
	for name, typ := range want {
		r, ok := got[name]
		switch {
		case slices.Contains(motoCannot, typ):
			continue
		case !ok:
			t.Errorf("%s (%s) was not created", name, typ)
		// moto gives a Lambda permission no physical id.
		case r.ResourceStatus != cfntypes.ResourceStatusCreateComplete || (aws.ToString(r.PhysicalResourceId) == "" && typ != "AWS::Lambda::Permission"):
			t.Errorf("%s (%s): %s %q", name, typ, r.ResourceStatus, aws.ToString(r.ResourceStatusReason))
		default:
			created++
		}
	}
	for name, r := range got {
		// moto lists its placeholders without a logical id.
		if _, ok := want[name]; !ok && name != "" {
			t.Errorf("%q (%s, %s) was created, but its condition is false under the default parameters", name, aws.ToString(r.ResourceType), aws.ToString(r.PhysicalResourceId))
		}
	}
	t.Logf("%d of %d resources created on moto; %d are types moto cannot create (%s)", created, len(want), len(want)-created, strings.Join(motoCannot, ", "))
	if created < 40 {
		t.Errorf("only %d resources created", created)
	}

	// The table is dynamo.Schema(); the task queue dead-letters after 3.
	table := aws.ToString(got["Table"].PhysicalResourceId)
	desc, err := dynamodb.NewFromConfig(cfg).DescribeTable(ctx, &dynamodb.DescribeTableInput{TableName: aws.String(table)})
	if err != nil {
		t.Fatalf("DescribeTable %s: %v", table, err)
	}
	keys := func(ks []dynamotypes.KeySchemaElement) (out []string) {
		for _, k := range ks {
			out = append(out, fmt.Sprintf("%s %s", aws.ToString(k.AttributeName), k.KeyType))
		}
		return out
	}
	if got, want := keys(desc.Table.KeySchema), keys(dynamo.Schema().KeySchema); !slices.Equal(got, want) {
		t.Errorf("table keys %v, want dynamo.Schema()'s %v", got, want)
	}
	queue := aws.ToString(got["TaskQueue"].PhysicalResourceId)
	attrs, err := sqs.NewFromConfig(cfg).GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(queue), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
	if err != nil {
		t.Fatalf("GetQueueAttributes %s: %v", queue, err)
	}
	if !strings.Contains(attrs.Attributes["RedrivePolicy"], `"maxReceiveCount": 3`) && !strings.Contains(attrs.Attributes["RedrivePolicy"], `"maxReceiveCount":3`) || attrs.Attributes["VisibilityTimeout"] != "1200" {
		t.Errorf("task queue attributes %v", attrs.Attributes)
	}
}

// functionZip is a deployment package moto accepts (it does not run it).
func functionZip(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.Create("bootstrap")
	if err == nil {
		_, err = w.Write([]byte("#!/bin/sh\n"))
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
