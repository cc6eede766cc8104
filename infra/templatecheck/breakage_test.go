package templatecheck

import (
	"fmt"
	"strings"
	"testing"
)

// breakages are edits that each check must catch: the checks are only as
// good as their power to fail. Each edit replaces text that occurs exactly
// once in the file, in memory; nothing is written to the repository.
var breakages = []struct {
	check, file, old, new string
}{
	{"transform", "template.yaml", "Transform: AWS::Serverless-2016-10-31", "Transform: AWS::LanguageExtensions"},

	{"functions", "template.yaml", "Architectures: [arm64]\n      MemorySize: 256\n      Timeout: 29\n      Role: !GetAtt SearchRole.Arn", "Architectures: [x86_64]\n      MemorySize: 256\n      Timeout: 29\n      Role: !GetAtt SearchRole.Arn"},
	{"functions", "template.yaml", "Description: Docker Hub search, cached in the table\n      CodeUri: .", "Description: Docker Hub search, cached in the table\n      CodeUri: functions/search"},
	{"functions", "template.yaml", "BuildMethod: makefile\n    Properties:\n      FunctionName: !Sub ${AWS::StackName}-warm", "BuildMethod: go1.x\n    Properties:\n      FunctionName: !Sub ${AWS::StackName}-warm"},
	{"functions", "template.yaml", "      Timeout: 900\n", "      Timeout: 60\n"},
	{"functions", "template.yaml", "Runtime: provided.al2023\n      Architectures: [arm64]\n      MemorySize: 512\n      Timeout: 29\n      Role: !GetAtt DownloadRole.Arn", "Runtime: go1.x\n      Architectures: [arm64]\n      MemorySize: 512\n      Timeout: 29\n      Role: !GetAtt DownloadRole.Arn"},

	{"build targets", "Makefile", "build-WarmFunction:\n", "build-Warm:\n"},
	{"build targets", "Makefile", "$(call lambda-bootstrap,details)", "$(call lambda-bootstrap,search)"},
	{"build targets", "Makefile", "-tags lambda.norpc ", ""},
	{"build targets", "Makefile", "LAMBDA_GOARCH ?= arm64", "LAMBDA_GOARCH ?= amd64"},
	{"build targets", "Makefile", "CGO_ENABLED=0 GOOS=linux GOARCH=$(LAMBDA_GOARCH)", "GOOS=linux GOARCH=$(LAMBDA_GOARCH)"},

	{"routes", "template.yaml", "Path: /api/popular,", "Path: /api/populars,"},
	{"routes", "template.yaml", `Path: /api/health, PayloadFormatVersion: "2.0"`, `Path: /api/health, PayloadFormatVersion: "1.0"`},
	{"routes", "template.yaml", "ThrottlingBurstLimit: !Ref ApiThrottleBurst", "ThrottlingBurstLimit: 100"},

	{"references", "template.yaml", "Resource: !GetAtt SearchLogGroup.Arn", "Resource: !GetAtt SearchLogGroups.Arn"},
	{"references", "template.yaml", "OriginAccessControlId: !GetAtt WebOriginAccessControl.Id", "OriginAccessControlId: !GetAtt WebOriginAccessControl.Arn"},
	{"references", "template.yaml", "LogGroupName: !Sub /aws/lambda/${AWS::StackName}-search", "LogGroupName: !Sub /aws/lambda/${AWS::StackNam}-search"},
	{"references", "template.yaml", "- !If\n                - HasDockerHubSecret\n                - Sid: DockerHubAccount\n                  Effect: Allow\n                  Action: secretsmanager:GetSecretValue\n                  Resource: !Ref DockerHubSecretArn\n                - !Ref AWS::NoValue\n\n  AssembleFunction:", "- !If\n                - HasDockerHubSecrets\n                - Sid: DockerHubAccount\n                  Effect: Allow\n                  Action: secretsmanager:GetSecretValue\n                  Resource: !Ref DockerHubSecretArn\n                - !Ref AWS::NoValue\n\n  AssembleFunction:"},

	{"environment", "template.yaml", "TARPORT_DLQ_ARN: !GetAtt DeadLetterQueue.Arn", "TARPORT_DEAD_LETTER_ARN: !GetAtt DeadLetterQueue.Arn"},
	{"environment", "template.yaml", "TARPORT_DLQ_ARN: !GetAtt DeadLetterQueue.Arn", "TARPORT_DLQ_ARN: !Ref DeadLetterQueue"},
	{"environment", "template.yaml", "TARPORT_HOT_IMAGES: !Ref HotImages", "TARPORT_HOT_IMAGES: !Ref HotImages\n          TARPORT_DOCKERHUB_TOKEN: dckr_pat_x"},
	{"environment", "template.yaml", "          TARPORT_DOCKERHUB_REGISTRY: !Ref DockerHubRegistry\n          TARPORT_MAX_IMAGE_BYTES: !Ref MaxImageBytes\n", ""},

	{"no wildcards", "template.yaml", "Resource: !GetAtt PopularLogGroup.Arn", `Resource: "*"`},
	{"no wildcards", "template.yaml", "                Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:Query]\n                Resource: !GetAtt Table.Arn\n              - Sid: Guards\n                Effect: Allow\n                Action: secretsmanager:GetSecretValue\n                Resource: !Ref OriginSecret\n              - !If\n                - HasAccessToken\n                - Sid: AccessToken\n                  Effect: Allow\n                  Action: secretsmanager:GetSecretValue\n                  Resource: !Ref AccessTokenSecret\n                - !Ref AWS::NoValue\n\n  SearchFunction:", "                Action: dynamodb:*\n                Resource: !GetAtt Table.Arn\n\n  SearchFunction:"},
	{"no wildcards", "template.yaml", "Action: [s3:GetObject, s3:PutObject, s3:DeleteObject, s3:ListBucket, s3:AbortMultipartUpload", "Action: [s3:*, s3:PutObject, s3:DeleteObject, s3:ListBucket, s3:AbortMultipartUpload"},
	{"no wildcards", "template.yaml", "Resource: !GetAtt DataBucket.Arn\n              - Sid: MetaCache\n                Effect: Allow\n                Action: [s3:GetObject, s3:PutObject]\n                Resource: !Sub ${DataBucket.Arn}/meta/*\n              # HEAD", "Resource: !GetAtt DataBucket.Arn\n              - Sid: MetaCache\n                Effect: Allow\n                Action: [s3:GetObject, s3:PutObject]\n                Resource: !Sub arn:${AWS::Partition}:s3:::*\n              # HEAD"},
	{"no wildcards", "template.yaml", "Principal: {Service: cloudfront.amazonaws.com}", `Principal: "*"`},

	{"roles and logs", "template.yaml", "      Role: !GetAtt DetailsRole.Arn\n", ""},
	{"roles and logs", "template.yaml", "Role: !GetAtt PopularRole.Arn", "Role: !GetAtt SearchRole.Arn"},
	{"roles and logs", "template.yaml", "      Description: tarport warm function (cache refresh, hot images)\n", "      Description: tarport warm function (cache refresh, hot images)\n      ManagedPolicyArns: [arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]\n"},
	{"roles and logs", "template.yaml", "LogGroup: !Ref WarmLogGroup\n        LogFormat: JSON", "LogGroup: !Ref WarmLogGroup\n        LogFormat: Text"},
	{"roles and logs", "template.yaml", "LogGroupName: !Sub /aws/lambda/${AWS::StackName}-popular", "LogGroupName: !Sub /aws/lambda/${AWS::StackName}-popularity"},

	{"grants", "template.yaml", "# Jobs: a job and its layers' progress items are read with one Query.\n              - Sid: Jobs\n                Effect: Allow\n                Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:Query]", "# Jobs: a job and its layers' progress items are read with one Query.\n              - Sid: Jobs\n                Effect: Allow\n                Action: [dynamodb:GetItem, dynamodb:PutItem, dynamodb:UpdateItem, dynamodb:Query, dynamodb:DeleteItem]"},
	{"grants", "template.yaml", "dynamodb:DeleteItem, dynamodb:Query, dynamodb:BatchWriteItem]\n                Resource: !GetAtt Table.Arn\n              - Sid: Guards", "dynamodb:DeleteItem, dynamodb:Query]\n                Resource: !GetAtt Table.Arn\n              - Sid: Guards"},
	{"grants", "template.yaml", "Action: [s3:GetObject, s3:PutObject, s3:AbortMultipartUpload, s3:ListMultipartUploadParts]\n                Resource:\n", "Action: [s3:GetObject, s3:PutObject, s3:DeleteObject, s3:AbortMultipartUpload, s3:ListMultipartUploadParts]\n                Resource:\n"},
	{"grants", "template.yaml", "              - Sid: QueueVerify\n                Effect: Allow\n                Action: sqs:SendMessage\n", "              - Sid: QueueVerify\n                Effect: Allow\n                Action: sqs:GetQueueUrl\n"},
	{"grants", "template.yaml", "Action: sqs:SendMessage\n                Resource: !GetAtt TaskQueue.Arn\n              - Sid: TaskKey\n                Effect: Allow\n                Action: secretsmanager:GetSecretValue\n                Resource: !Ref TaskKeySecret\n              - !If\n                - HasDockerHubSecret\n                - Sid: DockerHubAccount\n                  Effect: Allow\n                  Action: secretsmanager:GetSecretValue\n                  Resource: !Ref DockerHubSecretArn\n                - !Ref AWS::NoValue\n\n  # Signs download links.", "Action: sqs:SendMessage\n                Resource: !GetAtt TaskQueue.Arn\n              - Sid: TaskKey\n                Effect: Allow\n                Action: secretsmanager:GetSecretValue\n                Resource: !Ref TaskKeySecret\n\n  # Signs download links."},

	{"table", "template.yaml", "AttributeName: expires_at", "AttributeName: ttl"},
	{"table", "template.yaml", "        - AttributeName: sk\n          AttributeType: S", "        - AttributeName: sk\n          AttributeType: N"},
	{"table", "template.yaml", "        - AttributeName: sk\n          KeyType: RANGE", "        - AttributeName: sk\n          KeyType: HASH"},
	{"table", "template.yaml", "BillingMode: PAY_PER_REQUEST", "BillingMode: PROVISIONED"},

	{"buckets", "template.yaml", "    Type: AWS::S3::Bucket\n    Properties:\n      PublicAccessBlockConfiguration:\n        BlockPublicAcls: true\n        BlockPublicPolicy: true\n        IgnorePublicAcls: true\n        RestrictPublicBuckets: true\n      OwnershipControls:\n        Rules:\n          - ObjectOwnership: BucketOwnerEnforced\n      BucketEncryption:\n        ServerSideEncryptionConfiguration:\n          - ServerSideEncryptionByDefault:\n              SSEAlgorithm: AES256\n      LifecycleConfiguration:", "    Type: AWS::S3::Bucket\n    Properties:\n      PublicAccessBlockConfiguration:\n        BlockPublicAcls: false\n        BlockPublicPolicy: true\n        IgnorePublicAcls: true\n        RestrictPublicBuckets: true\n      OwnershipControls:\n        Rules:\n          - ObjectOwnership: BucketOwnerEnforced\n      BucketEncryption:\n        ServerSideEncryptionConfiguration:\n          - ServerSideEncryptionByDefault:\n              SSEAlgorithm: AES256\n      LifecycleConfiguration:"},
	{"buckets", "template.yaml", "      Bucket: !Ref WebBucket\n", "      Bucket: !Ref DataBucket\n"},

	{"lifecycle", "template.yaml", "Prefix: tars/\n            ExpirationInDays: 1", "Prefix: tars/\n            ExpirationInDays: 7"},
	{"lifecycle", "template.yaml", "DaysAfterInitiation: 1", "DaysAfterInitiation: 7"},
	{"lifecycle", "template.yaml", "Prefix: meta/", "Prefix: metadata/"},

	{"queues", "template.yaml", "VisibilityTimeout: 1200\n      MessageRetentionPeriod: 86400", "VisibilityTimeout: 600\n      MessageRetentionPeriod: 86400"},
	{"queues", "template.yaml", "VisibilityTimeout: 1200\n      MessageRetentionPeriod: 345600", "VisibilityTimeout: 30\n      MessageRetentionPeriod: 345600"},
	{"queues", "template.yaml", "maxReceiveCount: 3", "maxReceiveCount: 10"},
	{"queues", "template.yaml", "MessageRetentionPeriod: 345600", "MessageRetentionPeriod: 3600"},

	{"event source mappings", "template.yaml", "BatchSize: 10\n      FunctionResponseTypes: [ReportBatchItemFailures]", "BatchSize: 10"},
	{"event source mappings", "template.yaml", "BatchSize: !Ref AssembleBatchSize\n      FunctionResponseTypes: [ReportBatchItemFailures]", "BatchSize: !Ref AssembleBatchSize"},
	{"event source mappings", "template.yaml", "EventSourceArn: !GetAtt DeadLetterQueue.Arn", "EventSourceArn: !GetAtt TaskQueue.Arn"},
	{"event source mappings", "template.yaml", "MaximumConcurrency: !Ref AssembleMaxConcurrency", "MaximumConcurrency: 1000"},

	{"warm schedule", "template.yaml", "Schedule: !Ref WarmSchedule", "Schedule: rate(5 minutes)"},
	{"warm schedule", "template.yaml", "Default: rate(1 hour)", "Default: rate(1 minute)"},

	{"distribution", "template.yaml", "PathPattern: /api/*", "PathPattern: /v1/*"},
	{"distribution", "template.yaml", "            OriginAccessControlId: !GetAtt WebOriginAccessControl.Id\n", ""},
	{"distribution", "template.yaml", "CachePolicyId: 4135ea2d-6df8-44a3-9df3-4b5a84be39ad", "CachePolicyId: 658327ea-f89d-4fab-a63d-7e88639e58f6"},
	{"distribution", "template.yaml", "frame-ancestors 'none'; ", ""},
	{"distribution", "template.yaml", "distribution/${WebDistribution}", "distribution/*"},
	{"distribution", "template.yaml", "AllowedMethods: [GET, HEAD, OPTIONS, PUT, PATCH, POST, DELETE]", "AllowedMethods: [GET, HEAD, OPTIONS]"},
	{"distribution", "template.yaml", `DomainName: !If [HasApiDomain, !Ref ApiDomainName, !Sub "${HttpApi}.execute-api.${AWS::Region}.amazonaws.com"]`, "DomainName: example.com"},
	{"distribution", "template.yaml", "HeaderName: X-Tarport-Origin-Secret", "HeaderName: X-Origin-Secret"},
	{"distribution", "template.yaml", ":SecretString}}", ":SecretString:password}}"},
	{"event source mappings", "template.yaml", "MaxValue: 4 # sqsqueue", "MaxValue: 10 # sqsqueue"},

	{"parameters", "template.yaml", "Default: 64GiB", "Default: 64GB"},
	{"parameters", "template.yaml", `AllowedPattern: "^((16[0-8]|`, `AllowedPattern: "^((16[0-7]|`},
	{"parameters match the code", "template.yaml", `|604800)s)$"`, `|604800)s|169h)$"`},
	{"parameters match the code", "template.yaml", `AllowedPattern: "^[1-9][0-9]{0,8}$"`, `AllowedPattern: "^[1-9][0-9]*$"`},
	{"stateful policies", "template.yaml", "    DeletionPolicy: Delete\n    UpdateReplacePolicy: Retain # deleted when emptied", "    UpdateReplacePolicy: Retain # deleted when emptied"},
	{"region-safe names", "template.yaml", "Name: !Sub ${AWS::StackName}-${AWS::Region}-web", "Name: !Sub ${AWS::StackName}-web"},
	{"alarms", "template.yaml", "Metric: {Namespace: tarport, MetricName: ChargedBytes}", "Metric: {Namespace: tarport, MetricName: BytesCharged}"},
	{"alarms", "template.yaml", "Dimensions: [{Name: status, Value: failed}]", "Dimensions: [{Name: outcome, Value: failed}]"},
	{"alarms", "template.yaml", `["tarport", "CacheHitBytes"`, `["tarport", "CacheBytes"`},
	{"parameters", "template.yaml", "  HotImages:\n    Type: String\n", "  Unused:\n    Type: String\n    Default: x\n  HotImages:\n    Type: String\n"},
	{"parameters", "template.yaml", "    Default: 1769\n", "    Default: 128\n"},
	{"parameters", "template.yaml", `AllowedPattern: "^(rate|cron)\\(.+\\)$"`, `AllowedPattern: "^rate\\(.+\\)$"`},

	{"outputs", "template.yaml", "Value: !Ref TaskQueue", "Value: !GetAtt TaskQueue.Arn"},
	{"outputs", "template.yaml", "  SiteUrl:\n", "  WebsiteUrl:\n"},

	{"deploy", "samconfig.toml", `capabilities = "CAPABILITY_IAM"`, `capabilities = "CAPABILITY_AUTO_EXPAND"`},
	{"deploy", "samconfig.toml", "resolve_s3 = true", "resolve_s3 = false"},
	{"deploy", "Makefile", "output WebBucketName)", "output WebBucket)"},
	{"deploy", "Makefile", "@command -v sam", "@true"},
	{"deploy", "Makefile", "--paths '/*'", "--paths '/index.html'"},
}

func TestChecksCatchBreakage(t *testing.T) {
	t.Parallel()
	byName := map[string]check{}
	for _, c := range checks {
		byName[c.name] = c
	}
	for _, c := range checks {
		n := 0
		for _, b := range breakages {
			if b.check == c.name {
				n++
			}
		}
		if n == 0 {
			t.Errorf("check %q: no breakage shows it can fail", c.name)
		}
	}

	seen := map[string]int{}
	for _, b := range breakages {
		c, ok := byName[b.check]
		if !ok {
			t.Errorf("breakage of unknown check %q", b.check)
			continue
		}
		seen[b.check]++
		t.Run(fmt.Sprintf("%s/%d", b.check, seen[b.check]), func(t *testing.T) {
			t.Parallel()
			repo, err := repoStack()
			if err != nil {
				t.Fatal(err)
			}
			text := repo.text[b.file]
			if n := strings.Count(text, b.old); n != 1 {
				t.Fatalf("%s holds %q %d times, want once: update this breakage", b.file, b.old, n)
			}
			broken, err := loadStack(map[string]string{b.file: strings.Replace(text, b.old, b.new, 1)}, t.TempDir())
			if err != nil {
				t.Fatalf("the broken %s no longer parses (%v): pick an edit the check itself must catch", b.file, err)
			}
			if problems := c.run(broken); len(problems) == 0 {
				t.Errorf("check %q passed with %s edited: %q -> %q", b.check, b.file, b.old, b.new)
			} else {
				t.Logf("caught: %s", problems[0])
			}
		})
	}
}
