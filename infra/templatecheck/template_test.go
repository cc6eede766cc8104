package templatecheck

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/tarport/tarport/shared/dynamo"
	"github.com/tarport/tarport/shared/httpapi"
	"github.com/tarport/tarport/shared/sqsqueue"
	"github.com/tarport/tarport/shared/tarport"
	"github.com/tarport/tarport/web"
)

// check is one property of the stack; run returns its problems.
type check struct {
	name string
	run  func(s *stack) []string
}

var checks = []check{
	{"transform", checkTransform},
	{"functions", checkFunctions},
	{"build targets", checkBuildTargets},
	{"routes", checkRoutes},
	{"references", checkReferences},
	{"environment", checkEnvironment},
	{"no wildcards", checkNoWildcards},
	{"roles and logs", checkRolesAndLogs},
	{"grants", checkGrants},
	{"table", checkTable},
	{"buckets", checkBuckets},
	{"lifecycle", checkLifecycle},
	{"queues", checkQueues},
	{"event source mappings", checkMappings},
	{"warm schedule", checkWarmSchedule},
	{"distribution", checkDistribution},
	{"parameters", checkParameters},
	{"parameters match the code", checkParametersMatchCode},
	{"stateful policies", checkStatefulPolicies},
	{"region-safe names", checkRegionSafeNames},
	{"alarms", checkAlarms},
	{"outputs", checkOutputs},
	{"deploy", checkDeploy},
}

func TestTemplate(t *testing.T) {
	t.Parallel()
	s, err := repoStack()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			for _, p := range c.run(s) {
				t.Error(p)
			}
		})
	}
}

// functionDirs are the functions of DESIGN.md's "Shape", each with its
// directory under functions/.
var functionDirs = map[string]string{
	"SearchFunction":   "search",
	"DetailsFunction":  "details",
	"PopularFunction":  "popular",
	"DownloadFunction": "download",
	"AssembleFunction": "assemble",
	"WarmFunction":     "warm",
}

// functionShapes are each function's timeout (s) and memory bounds (MB).
var functionShapes = map[string]struct{ timeout, minMB, maxMB int }{
	"SearchFunction":   {29, 256, 512}, // API Gateway answers within 30 s
	"DetailsFunction":  {29, 256, 512},
	"PopularFunction":  {29, 256, 512},
	"DownloadFunction": {29, 256, 512},
	"AssembleFunction": {900, 1769, 1769}, // Lambda's limit; 1769 MB is one full vCPU
	"WarmFunction":     {300, 256, 512},
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func checkTransform(s *stack) []string {
	if tr := s.cfn.Transform; tr == nil || deref(tr.String) != "AWS::Serverless-2016-10-31" {
		return []string{"Transform: want AWS::Serverless-2016-10-31, got " + show(s.raw["Transform"])}
	}
	return nil
}

func checkFunctions(s *stack) []string {
	fns := s.cfn.GetAllServerlessFunctionResources()
	problems := diff("AWS::Serverless::Function resources", slices.Collect(maps.Keys(fns)), slices.Collect(maps.Keys(functionDirs)))
	for _, name := range slices.Sorted(maps.Keys(fns)) {
		fn := fns[name]
		bad := func(format string, args ...any) { problems = append(problems, name+": "+fmt.Sprintf(format, args...)) }
		if fn.CodeUri == nil || deref(fn.CodeUri.String) != "." {
			bad(`CodeUri: want "." (one go.mod; the Makefile builds each function)`)
		}
		if fn.AWSCloudFormationMetadata["BuildMethod"] != "makefile" {
			bad("Metadata.BuildMethod: want makefile, got %v", fn.AWSCloudFormationMetadata["BuildMethod"])
		}
		if r := deref(fn.Runtime); r != "provided.al2023" {
			bad("Runtime: want provided.al2023, got %q", r)
		}
		if !slices.Equal(fn.Architectures, []string{"arm64"}) {
			bad("Architectures: want [arm64], got %v", fn.Architectures)
		}
		if h := deref(fn.Handler); h != "bootstrap" {
			bad("Handler: want bootstrap, got %q", h)
		}
		if shape, ok := functionShapes[name]; ok {
			if got := deref(fn.Timeout); got != shape.timeout {
				bad("Timeout: want %d s, got %d", shape.timeout, got)
			}
			if got := deref(fn.MemorySize); got < shape.minMB || got > shape.maxMB {
				bad("MemorySize (or its parameter's default): want %d..%d MB, got %d", shape.minMB, shape.maxMB, got)
			}
		}
		for ev, e := range fn.Events {
			if e.Type == "SQS" {
				bad("event %s: SAM's SQS event attaches AWSLambdaSQSQueueExecutionRole (Resource \"*\"); use an AWS::Lambda::EventSourceMapping", ev)
			}
		}
	}
	return problems
}

var makeTarget = regexp.MustCompile(`(?m)^(build-[A-Za-z0-9]+)[ \t]*:`)

func checkBuildTargets(s *stack) []string {
	var problems []string
	targets := map[string]bool{}
	for _, m := range makeTarget.FindAllStringSubmatch(s.text["Makefile"], -1) {
		targets[m[1]] = true
	}
	for _, name := range s.ofType("AWS::Serverless::Function") {
		target := "build-" + name
		if !targets[target] {
			problems = append(problems, fmt.Sprintf("Makefile: no target %s: sam build runs it for %s", target, name))
			continue
		}
		// The default is arm64; tests build amd64 for the Lambda emulator.
		for _, goarch := range []string{"", "amd64"} {
			out, err := makeDryRun(s.makefile, target, goarch)
			if err != nil {
				problems = append(problems, fmt.Sprintf("make -n %s: %v\n%s", target, err, out))
				continue
			}
			want := []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=" + orDefault(goarch, "arm64"), "-trimpath", "-tags lambda.norpc", "/artifacts/" + target + "/bootstrap"}
			for _, w := range want {
				if !strings.Contains(out, w) {
					problems = append(problems, fmt.Sprintf("make %s LAMBDA_GOARCH=%s: the commands lack %q:\n%s", target, goarch, w, out))
				}
			}
			if dir, ok := functionDirs[name]; ok && !regexp.MustCompile(`\./functions/`+dir+`(\s|$)`).MatchString(out) {
				problems = append(problems, fmt.Sprintf("make %s does not build ./functions/%s:\n%s", target, dir, out))
			}
		}
	}
	return problems
}

// orDefault returns s, or otherwise when s is empty.
func orDefault(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// makeDryRun prints the commands of a build target as sam build would run it.
func makeDryRun(makefile, target, goarch string) (string, error) {
	abs, err := filepath.Abs(makefile)
	if err != nil {
		return "", err
	}
	args := []string{"-n", "-f", abs, "-C", repoRoot, target, "ARTIFACTS_DIR=/artifacts/" + target}
	if goarch != "" {
		args = append(args, "LAMBDA_GOARCH="+goarch)
	}
	cmd := exec.Command("make", args...)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "LAMBDA_GOARCH", "ARTIFACTS_DIR", "MAKEFLAGS", "MFLAGS", "MAKELEVEL":
		default:
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// routes are the HTTP API of DESIGN.md, by function.
var routes = []string{
	"SearchFunction GET /api/search",
	"SearchFunction POST /api/search",
	"DetailsFunction GET /api/image-details",
	"DetailsFunction POST /api/image-details",
	"PopularFunction GET /api/popular",
	"DownloadFunction POST /api/downloads",
	"DownloadFunction POST /api/download",
	"DownloadFunction POST /api/download-stream",
	"DownloadFunction GET /api/downloads/{id}",
	"DownloadFunction GET /api/pull/{image+}",
	"DownloadFunction GET /api/health",
}

func checkRoutes(s *stack) []string {
	var problems, got []string
	for _, name := range s.ofType("AWS::Serverless::Function") {
		_, props := s.resource(name)
		for ev, e := range asMap(props["Events"]) {
			if asString(asMap(e)["Type"]) != "HttpApi" {
				continue
			}
			p := asMap(asMap(e)["Properties"])
			got = append(got, fmt.Sprintf("%s %s %s", name, asString(p["Method"]), asString(p["Path"])))
			if api := refTo(p["ApiId"]); api == "" || slices.Index(s.ofType("AWS::Serverless::HttpApi"), api) < 0 {
				problems = append(problems, fmt.Sprintf("%s event %s: ApiId %s is not the template's HttpApi", name, ev, show(p["ApiId"])))
			}
			if v := asString(p["PayloadFormatVersion"]); v != "2.0" {
				problems = append(problems, fmt.Sprintf("%s event %s: PayloadFormatVersion: want \"2.0\", got %q", name, ev, v))
			}
		}
	}
	problems = append(problems, diff("routes", got, routes)...)
	for _, api := range s.ofType("AWS::Serverless::HttpApi") {
		_, props := s.resource(api)
		rs := asMap(props["DefaultRouteSettings"])
		for key, param := range map[string]string{"ThrottlingBurstLimit": "ApiThrottleBurst", "ThrottlingRateLimit": "ApiThrottleRate"} {
			if refTo(rs[key]) != param {
				problems = append(problems, fmt.Sprintf("%s DefaultRouteSettings.%s: want !Ref %s, got %s", api, key, param, show(rs[key])))
			}
		}
	}
	return problems
}

// pseudoParameters are CloudFormation's own Refs.
var pseudoParameters = []string{
	"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition",
	"AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix",
}

// samGenerated are resources the SAM transform adds that the template
// names (cfn-lint, which runs the transform, checks they exist).
var samGenerated = []string{"HttpApiApiGatewayDefaultStage"}

// attributes are the GetAtt names of the resource types the template
// uses; a type missing here is not checked.
var attributes = map[string][]string{
	"AWS::IAM::Role":                         {"Arn", "RoleId"},
	"AWS::Logs::LogGroup":                    {"Arn"},
	"AWS::DynamoDB::Table":                   {"Arn", "StreamArn"},
	"AWS::S3::Bucket":                        {"Arn", "DomainName", "DualStackDomainName", "RegionalDomainName", "WebsiteURL"},
	"AWS::SQS::Queue":                        {"Arn", "QueueName", "QueueUrl"},
	"AWS::SecretsManager::Secret":            {"Id"},
	"AWS::Serverless::Function":              {"Arn"},
	"AWS::CloudFront::Distribution":          {"DomainName", "Id"},
	"AWS::CloudFront::OriginAccessControl":   {"Id"},
	"AWS::CloudFront::ResponseHeadersPolicy": {"Id", "LastModifiedTime"},
	"AWS::ApiGatewayV2::DomainName":          {"RegionalDomainName", "RegionalHostedZoneId", "DomainNameArn"},
	"AWS::CloudWatch::Alarm":                 {"Arn"},
}

func checkReferences(s *stack) []string {
	var problems []string
	resources := asMap(s.raw["Resources"])
	refable := func(name string) bool {
		_, isParam := asMap(s.raw["Parameters"])[name]
		_, isResource := resources[name]
		return isParam || isResource || slices.Contains(pseudoParameters, name) || slices.Contains(samGenerated, name)
	}
	checkAtt := func(path, att string) {
		res, name, ok := strings.Cut(att, ".")
		typ := asString(asMap(resources[res])["Type"])
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%s: GetAtt %q names no attribute", path, att))
		case typ == "":
			problems = append(problems, fmt.Sprintf("%s: GetAtt %s: no resource %s", path, att, res))
		case attributes[typ] != nil && !slices.Contains(attributes[typ], name):
			problems = append(problems, fmt.Sprintf("%s: GetAtt %s: type %s has no attribute %s", path, att, typ, name))
		}
	}
	walk(s.raw, "", func(path string, m map[string]any) {
		fn, arg, ok := intrinsic(m)
		if !ok {
			return
		}
		switch fn {
		case "Ref":
			if !refable(asString(arg)) {
				problems = append(problems, fmt.Sprintf("%s: Ref %v names no resource, parameter or pseudo parameter", path, arg))
			}
		case "Fn::GetAtt":
			checkAtt(path, attOf(m))
		case "Fn::Sub":
			text, vars, _ := subOf(m)
			for _, v := range subVariable.FindAllStringSubmatch(text, -1) {
				name := v[1]
				switch {
				case vars[name] != nil:
				case strings.Contains(name, ".") && !strings.HasPrefix(name, "AWS::"):
					checkAtt(path, name)
				case !refable(name):
					problems = append(problems, fmt.Sprintf("%s: Sub variable ${%s} names nothing", path, name))
				}
			}
		case "Fn::If", "Condition":
			cond, isName := arg.(string)
			if fn == "Fn::If" {
				cond, isName = first(arg), true
			}
			if _, ok := asMap(s.raw["Conditions"])[cond]; isName && !ok {
				problems = append(problems, fmt.Sprintf("%s: no condition %q", path, cond))
			}
		case "Fn::FindInMap":
			if _, ok := asMap(s.raw["Mappings"])[first(arg)]; !ok {
				problems = append(problems, fmt.Sprintf("%s: no mapping %q", path, first(arg)))
			}
		}
	})
	for name, r := range resources {
		if c := asString(asMap(r)["Condition"]); c != "" {
			if _, ok := asMap(s.raw["Conditions"])[c]; !ok {
				problems = append(problems, fmt.Sprintf("%s: no condition %q", name, c))
			}
		}
		for _, d := range stringsOf(asMap(r)["DependsOn"]) {
			if _, ok := resources[asString(d)]; !ok {
				problems = append(problems, fmt.Sprintf("%s: DependsOn %v: no such resource", name, d))
			}
		}
	}
	return problems
}

// first returns the first element of a list as a string.
func first(v any) string {
	if l := asList(v); len(l) > 0 {
		return asString(l[0])
	}
	return ""
}

// knownEnv are the variables the code reads: DESIGN.md's "Configuration",
// TARPORT_LOG_LEVEL (docs/OPERATIONS.md) and the AWS-only names.
var knownEnv = []string{
	"TARPORT_ADDR", "TARPORT_DATA_DIR", "TARPORT_HUB_API", "TARPORT_DOCKERHUB_REGISTRY",
	"TARPORT_INSECURE_REGISTRIES", "TARPORT_BUCKET", "TARPORT_TABLE", "TARPORT_QUEUE_URL",
	"TARPORT_PRESIGN_TTL", "TARPORT_MAX_IMAGE_BYTES", "TARPORT_RATE_LIMIT_PER_MINUTE",
	"TARPORT_DOCKERHUB_USERNAME", "TARPORT_DOCKERHUB_TOKEN", "TARPORT_LOG_LEVEL",
	"TARPORT_TASK_KEY_SECRET_ARN", "TARPORT_DOCKERHUB_SECRET_ARN", "TARPORT_DLQ_ARN", "TARPORT_HOT_IMAGES",
	"TARPORT_CLIENT_QUOTA_PER_DAY", "TARPORT_BUDGET_PER_DAY", "TARPORT_ACCESS_TOKEN_SECRET_ARN", "TARPORT_ORIGIN_SECRET_ARN",
	"TARPORT_LINK_SIGNER_ROLE_ARN",
}

// secretEnv must never be plain environment on AWS: Secrets Manager holds them.
var secretEnv = []string{"TARPORT_DOCKERHUB_USERNAME", "TARPORT_DOCKERHUB_TOKEN", "TARPORT_TASK_KEY", "TARPORT_ACCESS_TOKEN", "TARPORT_ORIGIN_SECRET"}

// Each function's environment, as the template writes the values.
var (
	everyEnv = map[string]string{
		"TARPORT_TABLE":     "!Ref Table",
		"TARPORT_LOG_LEVEL": "!Ref LogLevel",
		"TARPORT_HUB_API":   "!Ref HubApi",
	}
	// The functions that sign links.
	signerEnv = map[string]string{"TARPORT_LINK_SIGNER_ROLE_ARN": "!GetAtt LinkSignerRole.Arn"}
	// What every API function needs to guard its routes.
	guardEnv = map[string]string{
		"TARPORT_RATE_LIMIT_PER_MINUTE":   "!Ref RateLimitPerMinute",
		"TARPORT_ORIGIN_SECRET_ARN":       "!Ref OriginSecret",
		"TARPORT_ACCESS_TOKEN_SECRET_ARN": `{"Fn::If":["HasAccessToken",{"Ref":"AccessTokenSecret"},""]}`,
	}
	detailsEnv = map[string]string{
		"TARPORT_DOCKERHUB_REGISTRY": "!Ref DockerHubRegistry",
		"TARPORT_MAX_IMAGE_BYTES":    "!Ref MaxImageBytes",
	}
	jobEnv = map[string]string{
		"TARPORT_BUCKET":                "!Ref DataBucket",
		"TARPORT_QUEUE_URL":             "!Ref TaskQueue", // Ref of a queue is its URL
		"TARPORT_TASK_KEY_SECRET_ARN":   "!Ref TaskKeySecret",
		"TARPORT_DOCKERHUB_SECRET_ARN":  "!Ref DockerHubSecretArn",
		"TARPORT_PRESIGN_TTL":           "!Ref PresignTTL",
		"TARPORT_MAX_IMAGE_BYTES":       "!Ref MaxImageBytes",
		"TARPORT_RATE_LIMIT_PER_MINUTE": "!Ref RateLimitPerMinute",
		"TARPORT_DOCKERHUB_REGISTRY":    "!Ref DockerHubRegistry",
	}
	functionEnv = map[string][]map[string]string{
		"SearchFunction":  {everyEnv, guardEnv},
		"DetailsFunction": {everyEnv, guardEnv, detailsEnv},
		"PopularFunction": {everyEnv, guardEnv},
		"DownloadFunction": {everyEnv, jobEnv, guardEnv, signerEnv, {
			"TARPORT_CLIENT_QUOTA_PER_DAY": "!Sub ${ClientQuotaGiB}GiB",
			"TARPORT_BUDGET_PER_DAY":       "!Sub ${BudgetGiB}GiB",
		}},
		"AssembleFunction": {everyEnv, jobEnv, {"TARPORT_DLQ_ARN": "!GetAtt DeadLetterQueue.Arn"}},
		"WarmFunction":     {everyEnv, jobEnv, signerEnv, {"TARPORT_HOT_IMAGES": "!Ref HotImages"}},
	}
)

func checkEnvironment(s *stack) []string {
	var problems []string
	settings, err := settingsSource()
	if err != nil {
		return []string{err.Error()}
	}
	for _, name := range s.ofType("AWS::Serverless::Function") {
		_, props := s.resource(name)
		vars := asMap(asMap(props["Environment"])["Variables"])
		var got, want []string
		for k, v := range vars {
			got = append(got, k+" = "+show(v))
			switch {
			case slices.Contains(secretEnv, k):
				problems = append(problems, fmt.Sprintf("%s: %s is a secret: give its Secrets Manager ARN instead", name, k))
			case !slices.Contains(knownEnv, k):
				problems = append(problems, fmt.Sprintf("%s: %s is no variable the code knows (DESIGN.md \"Configuration\")", name, k))
			case !strings.Contains(settings, `"`+k+`"`):
				problems = append(problems, fmt.Sprintf("%s: %s is never read by shared/settings", name, k))
			}
		}
		for _, part := range functionEnv[name] {
			for k, v := range part {
				want = append(want, k+" = "+v)
			}
		}
		problems = append(problems, diff(name+" environment", got, want)...)
	}
	return problems
}

// settingsSource is the text of shared/settings (tests excluded).
func settingsSource() (string, error) {
	files, err := filepath.Glob(filepath.Join(repoRoot, "shared", "settings", "*.go"))
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		text, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		b.Write(text)
	}
	return b.String(), nil
}

// scopedObjects is the one wildcard a Resource may hold: every object
// under a prefix of a bucket of the template, like ${DataBucket.Arn}/entries/*.
var scopedObjects = regexp.MustCompile(`^\$\{[A-Za-z0-9]+\.Arn\}(/[A-Za-z0-9._-]+)*/\*$`)

// checkNoWildcards holds every policy statement of the template to least
// privilege: no action or resource wildcard, no NotAction or NotResource,
// no Allow for everyone.
func checkNoWildcards(s *stack) []string {
	var problems []string
	for _, st := range statements(s.raw) {
		bad := func(format string, args ...any) {
			problems = append(problems, st.path+": "+fmt.Sprintf(format, args...))
		}
		for _, k := range []string{"NotAction", "NotResource", "NotPrincipal"} {
			if st.body[k] != nil {
				bad("%s is a wildcard in disguise", k)
			}
		}
		for _, a := range stringsOf(st.body["Action"]) {
			if name, ok := a.(string); !ok || strings.Contains(name, "*") || !strings.Contains(name, ":") {
				bad("action %s: want one literal service:Action, no wildcard", show(a))
			}
		}
		if st.body["Resource"] == nil && st.body["Principal"] == nil {
			bad("no Resource")
		}
		for _, r := range stringsOf(st.body["Resource"]) {
			text := show(r)
			if sub, _, ok := subOf(r); ok {
				text = sub
			}
			if strings.Contains(text, "*") && !scopedObjects.MatchString(text) {
				bad("resource %s: a wildcard beyond objects under a prefix of one bucket", show(r))
			}
		}
		if st.body["Effect"] == "Allow" && (st.body["Principal"] == "*" || asMap(st.body["Principal"])["AWS"] == "*") {
			bad("allows everyone")
		}
	}
	return problems
}

// checkRolesAndLogs: each function has its own role, which trusts Lambda
// alone and holds no managed policy (those name Resource "*"), and its
// own log group /aws/lambda/<function name>, written as JSON.
func checkRolesAndLogs(s *stack) []string {
	var problems []string
	roleOf, groupOf := map[string]string{}, map[string]string{}
	for _, name := range s.ofType("AWS::Serverless::Function") {
		_, props := s.resource(name)
		bad := func(format string, args ...any) { problems = append(problems, name+": "+fmt.Sprintf(format, args...)) }
		for _, p := range []string{"Policies", "PermissionsBoundary"} {
			if props[p] != nil {
				bad("%s: SAM's policies go on a role it makes; give them to the function's own role", p)
			}
		}
		role, _ := strings.CutSuffix(attOf(props["Role"]), ".Arn")
		if typ, _ := s.resource(role); role == "" || typ != "AWS::IAM::Role" {
			bad("Role: want !GetAtt <an AWS::IAM::Role>.Arn, got %s (without one SAM makes a role with AWSLambdaBasicExecutionRole)", show(props["Role"]))
		} else if other, taken := roleOf[role]; taken {
			bad("shares its role %s with %s", role, other)
		} else {
			roleOf[role] = name
			_, rp := s.resource(role)
			if rp["ManagedPolicyArns"] != nil {
				bad("role %s: ManagedPolicyArns: managed policies are outside this test's reach; use inline statements", role)
			}
			trust := statements(rp["AssumeRolePolicyDocument"])
			if len(trust) != 1 || show(trust[0].body["Action"]) != "sts:AssumeRole" || show(asMap(trust[0].body["Principal"])["Service"]) != "lambda.amazonaws.com" {
				bad("role %s: want a trust policy of one statement: lambda.amazonaws.com may sts:AssumeRole", role)
			}
		}

		lc := asMap(props["LoggingConfig"])
		if f := asString(lc["LogFormat"]); f != "JSON" {
			bad("LoggingConfig.LogFormat: want JSON, got %q", f)
		}
		group := refTo(lc["LogGroup"])
		typ, gp := s.resource(group)
		if typ != "AWS::Logs::LogGroup" {
			bad("LoggingConfig.LogGroup: want !Ref <its AWS::Logs::LogGroup>, got %s", show(lc["LogGroup"]))
			continue
		}
		if other, taken := groupOf[group]; taken {
			bad("shares its log group %s with %s", group, other)
		}
		groupOf[group] = name
		fnName, _, _ := subOf(props["FunctionName"])
		if gname, _, _ := subOf(gp["LogGroupName"]); fnName == "" || gname != "/aws/lambda/"+fnName {
			bad("log group %s is named %s, want /aws/lambda/<FunctionName> (FunctionName %s)", group, show(gp["LogGroupName"]), show(props["FunctionName"]))
		}
		if refTo(gp["RetentionInDays"]) != "LogRetentionDays" {
			bad("log group %s: RetentionInDays: want !Ref LogRetentionDays, got %s", group, show(gp["RetentionInDays"]))
		}
	}
	return problems
}

// on lists "action on resource" for every pair.
func on(resource string, actions ...string) []string {
	out := make([]string, len(actions))
	for i, a := range actions {
		out[i] = a + " on " + resource
	}
	return out
}

func logsTo(group string) []string {
	return on("!GetAtt "+group+".Arn", "logs:CreateLogStream", "logs:PutLogEvents")
}

// Resources of the grants, as the template writes them.
const (
	table       = "!GetAtt Table.Arn"
	dataBucket  = "!GetAtt DataBucket.Arn"
	meta        = "!Sub ${DataBucket.Arn}/meta/*"
	entries     = "!Sub ${DataBucket.Arn}/entries/*"
	tars        = "!Sub ${DataBucket.Arn}/tars/*"
	staging     = "!Sub ${DataBucket.Arn}/staging/*"
	taskQueue   = "!GetAtt TaskQueue.Arn"
	deadLetters = "!GetAtt DeadLetterQueue.Arn"
	taskKey     = "!Ref TaskKeySecret"
	hubAccount  = "!Ref DockerHubSecretArn if HasDockerHubSecret"
	s3Multipart = "s3:AbortMultipartUpload"
	getSecret   = "secretsmanager:GetSecretValue"
	listBucket  = "s3:ListBucket" // so S3 answers a HEAD of a missing key 404, not 403
	getObject   = "s3:GetObject"  // also HEAD, the source of UploadPartCopy, presigned links
	putObject   = "s3:PutObject"  // also multipart uploads and UploadPartCopy's target
	listParts   = "s3:ListMultipartUploadParts"
	sendTask    = "sqs:SendMessage"
	cacheGet    = "dynamodb:GetItem"
	cachePut    = "dynamodb:PutItem"
	jobUpdate   = "dynamodb:UpdateItem"
	jobDelete   = "dynamodb:DeleteItem"
	query       = "dynamodb:Query"          // a job with its progress items; the quotas' hours
	batchWrite  = "dynamodb:BatchWriteItem" // a new job's progress items
	originKey   = "!Ref OriginSecret"
	accessToken = "!Ref AccessTokenSecret if HasAccessToken"
)

// guardGrants are what the guards of an API function take: the rate
// limit's counters and the two secrets.
func guardGrants() [][]string {
	return [][]string{on(originKey, getSecret), on(accessToken, getSecret)}
}

// jobGrants are what creating and reading jobs takes (download and warm).
func jobGrants() [][]string {
	return [][]string{
		on(table, cacheGet, cachePut, jobUpdate, jobDelete, query, batchWrite),
		on(dataBucket, listBucket),
		on(meta, getObject, putObject),
		on(entries, getObject),
		on(tars, getObject, putObject, s3Multipart, listParts), // a job whose layers are all cached is stitched at once
		on(staging, putObject),                                 // a split layer's staging upload begins at create
		on(taskQueue, sendTask),
		on(taskKey, getSecret),
		on(hubAccount, getSecret),
		on("!Sub arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${AWS::StackName}-links-${AWS::Region}", "sts:AssumeRole"),
	}
}

// grants are every permission of each function's role: least privilege
// is this table, and the template must match it exactly.
var grants = map[string][][]string{
	"SearchFunction":   append([][]string{logsTo("SearchLogGroup"), on(table, cacheGet, cachePut, jobUpdate, query)}, guardGrants()...),
	"DetailsFunction":  append([][]string{logsTo("DetailsLogGroup"), on(table, cacheGet, cachePut, jobUpdate, query)}, guardGrants()...),
	"PopularFunction":  append([][]string{logsTo("PopularLogGroup"), on(table, cacheGet, cachePut, jobUpdate, query)}, guardGrants()...),
	"DownloadFunction": slices.Concat([][]string{logsTo("DownloadLogGroup")}, jobGrants(), guardGrants()),
	"WarmFunction":     append([][]string{logsTo("WarmLogGroup")}, jobGrants()...),
	"AssembleFunction": {
		logsTo("AssembleLogGroup"),
		on(table, cacheGet, cachePut, jobUpdate, query),
		on(dataBucket, listBucket),
		on(entries, getObject, putObject, s3Multipart, listParts),
		on(tars, getObject, putObject, s3Multipart, listParts),
		on(meta, getObject, putObject, s3Multipart, listParts),
		on(staging, getObject, putObject, "s3:DeleteObject", s3Multipart, listParts),
		on(taskQueue, sendTask), // a split layer's last range queues its verify task
		on(taskQueue, "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"),
		on(deadLetters, "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"),
		on(taskKey, getSecret),
		on(hubAccount, getSecret),
	},
}

func checkGrants(s *stack) []string {
	var problems []string
	for _, name := range s.ofType("AWS::Serverless::Function") {
		_, props := s.resource(name)
		role, _ := strings.CutSuffix(attOf(props["Role"]), ".Arn")
		_, rp := s.resource(role)
		var got []string
		for _, pol := range asList(rp["Policies"]) {
			for _, st := range statements(asMap(pol)["PolicyDocument"]) {
				if st.body["Effect"] != "Allow" {
					continue
				}
				for _, a := range stringsOf(st.body["Action"]) {
					for _, r := range stringsOf(st.body["Resource"]) {
						g := show(a) + " on " + show(r)
						if st.when != "" {
							g += " if " + st.when
						}
						got = append(got, g)
					}
				}
			}
		}
		want, ok := grants[name]
		if !ok {
			problems = append(problems, name+": no grants listed in this test")
			continue
		}
		problems = append(problems, diff(name+" role "+role, got, slices.Concat(want...))...)
	}
	return problems
}

func checkTable(s *stack) []string {
	tables := s.cfn.GetAllDynamoDBTableResources()
	if len(tables) != 1 || tables["Table"] == nil {
		return []string{fmt.Sprintf("want one AWS::DynamoDB::Table named Table, got %v", slices.Sorted(maps.Keys(tables)))}
	}
	tb, want := tables["Table"], dynamo.Schema()
	var problems []string
	if got := deref(tb.BillingMode); got != string(want.BillingMode) {
		problems = append(problems, fmt.Sprintf("BillingMode: dynamo.Schema() says %s, template %q", want.BillingMode, got))
	}
	var gotAttrs, wantAttrs, gotKeys, wantKeys []string
	for _, a := range tb.AttributeDefinitions {
		gotAttrs = append(gotAttrs, a.AttributeName+" "+a.AttributeType)
	}
	for _, a := range want.AttributeDefinitions {
		wantAttrs = append(wantAttrs, deref(a.AttributeName)+" "+string(a.AttributeType))
	}
	for _, k := range tb.KeySchema {
		gotKeys = append(gotKeys, k.AttributeName+" "+k.KeyType)
	}
	for _, k := range want.KeySchema {
		wantKeys = append(wantKeys, deref(k.AttributeName)+" "+string(k.KeyType))
	}
	problems = append(problems, diff("AttributeDefinitions (as dynamo.Schema())", gotAttrs, wantAttrs)...)
	if !slices.Equal(gotKeys, wantKeys) {
		problems = append(problems, fmt.Sprintf("KeySchema: dynamo.Schema() says %v, template %v", wantKeys, gotKeys))
	}
	if len(tb.GlobalSecondaryIndexes) != len(want.GlobalSecondaryIndexes) || len(tb.LocalSecondaryIndexes) != len(want.LocalSecondaryIndexes) {
		problems = append(problems, "secondary indexes differ from dynamo.Schema()")
	}
	if ttl := tb.TimeToLiveSpecification; ttl == nil || !ttl.Enabled || deref(ttl.AttributeName) != dynamo.AttrTTL {
		problems = append(problems, "TimeToLiveSpecification: want enabled on "+dynamo.AttrTTL)
	}
	if tb.SSESpecification == nil || !tb.SSESpecification.SSEEnabled {
		problems = append(problems, "SSESpecification.SSEEnabled: want true")
	}
	return problems
}

// checkBuckets: every bucket is private, owner-enforced, encrypted, and
// refuses plain HTTP.
func checkBuckets(s *stack) []string {
	var problems []string
	tlsOnly := map[string]bool{}
	for _, name := range s.ofType("AWS::S3::BucketPolicy") {
		_, props := s.resource(name)
		for _, st := range statements(props["PolicyDocument"]) {
			cond := asMap(asMap(st.body["Condition"])["Bool"])
			if st.body["Effect"] == "Deny" && fmt.Sprint(cond["aws:SecureTransport"]) == "false" &&
				slices.Contains(stringsOf(st.body["Action"]), any(getObject)) && slices.Contains(stringsOf(st.body["Action"]), any(putObject)) {
				tlsOnly[refTo(props["Bucket"])] = true
			}
		}
	}
	for _, name := range s.ofType("AWS::S3::Bucket") {
		b, err := s.cfn.GetS3BucketWithName(name)
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		bad := func(format string, args ...any) { problems = append(problems, name+": "+fmt.Sprintf(format, args...)) }
		if p := b.PublicAccessBlockConfiguration; p == nil || !deref(p.BlockPublicAcls) || !deref(p.BlockPublicPolicy) || !deref(p.IgnorePublicAcls) || !deref(p.RestrictPublicBuckets) {
			bad("PublicAccessBlockConfiguration: want all four true")
		}
		if o := b.OwnershipControls; o == nil || len(o.Rules) != 1 || deref(o.Rules[0].ObjectOwnership) != "BucketOwnerEnforced" {
			bad("OwnershipControls: want BucketOwnerEnforced (no ACLs)")
		}
		if e := b.BucketEncryption; e == nil || len(e.ServerSideEncryptionConfiguration) == 0 || e.ServerSideEncryptionConfiguration[0].ServerSideEncryptionByDefault == nil {
			bad("BucketEncryption: want a default encryption")
		}
		if b.WebsiteConfiguration != nil || b.CorsConfiguration != nil {
			bad("no website hosting or CORS: CloudFront and presigned links reach it")
		}
		if !tlsOnly[name] {
			bad("no bucket policy denying requests without TLS (aws:SecureTransport false)")
		}
	}
	return problems
}

// lifecycle is what the data bucket keeps and for how long (days).
var lifecycle = map[string]int{
	"tars/":    1,  // jobs live 24 h
	"entries/": 14, // EntryRetentionDays' default
	"meta/":    30,
	"staging/": 1, // split layers before verification
}

func checkLifecycle(s *stack) []string {
	b, err := s.cfn.GetS3BucketWithName("DataBucket")
	if err != nil {
		return []string{err.Error()}
	}
	if b.LifecycleConfiguration == nil {
		return []string{"DataBucket: no LifecycleConfiguration"}
	}
	var problems []string
	got, abort := map[string]int{}, false
	for _, r := range b.LifecycleConfiguration.Rules {
		if r.Status != "Enabled" {
			continue
		}
		if r.AbortIncompleteMultipartUpload != nil && r.AbortIncompleteMultipartUpload.DaysAfterInitiation == 1 && deref(r.Prefix) == "" && len(r.TagFilters) == 0 {
			abort = true
		}
		if r.ExpirationInDays != nil {
			got[deref(r.Prefix)] = *r.ExpirationInDays
		}
	}
	for prefix, days := range lifecycle {
		if got[prefix] != days {
			problems = append(problems, fmt.Sprintf("DataBucket: objects under %s: want an enabled rule with ExpirationInDays %d, got %d", prefix, days, got[prefix]))
		}
	}
	if !abort {
		problems = append(problems, "DataBucket: want an enabled rule for the whole bucket aborting incomplete multipart uploads after 1 day")
	}
	return problems
}

// checkQueues: a queue hides a received message longer than its consumer
// may run (else a task runs twice at once); the task queue dead-letters
// to a queue that keeps messages longer.
func checkQueues(s *stack) []string {
	var problems []string
	for _, m := range s.ofType("AWS::Lambda::EventSourceMapping") {
		_, props := s.resource(m)
		queue, _ := strings.CutSuffix(attOf(props["EventSourceArn"]), ".Arn")
		q, qerr := s.cfn.GetSQSQueueWithName(queue)
		fn, ferr := s.cfn.GetServerlessFunctionWithName(refTo(props["FunctionName"]))
		if qerr != nil || ferr != nil {
			problems = append(problems, fmt.Sprintf("%s: want an SQS queue's Arn and a function's Ref: %v %v", m, qerr, ferr))
			continue
		}
		if deref(q.VisibilityTimeout) <= deref(fn.Timeout) {
			problems = append(problems, fmt.Sprintf("%s: VisibilityTimeout %d s does not exceed %s's Timeout %d s", queue, deref(q.VisibilityTimeout), refTo(props["FunctionName"]), deref(fn.Timeout)))
		}
	}
	for _, name := range s.ofType("AWS::SQS::Queue") {
		q, _ := s.cfn.GetSQSQueueWithName(name)
		if !deref(q.SqsManagedSseEnabled) && q.KmsMasterKeyId == nil {
			problems = append(problems, name+": want SqsManagedSseEnabled")
		}
	}
	tq, err := s.cfn.GetSQSQueueWithName("TaskQueue")
	dl, err2 := s.cfn.GetSQSQueueWithName("DeadLetterQueue")
	if err != nil || err2 != nil {
		return append(problems, fmt.Sprint("want queues TaskQueue and DeadLetterQueue: ", err, err2))
	}
	if got := deref(tq.MessageRetentionPeriod); got != 86400 {
		problems = append(problems, fmt.Sprintf("TaskQueue: MessageRetentionPeriod: want 86400 (a job lives 1 day), got %d", got))
	}
	if deref(dl.MessageRetentionPeriod) <= deref(tq.MessageRetentionPeriod) {
		problems = append(problems, "DeadLetterQueue: must keep messages longer than TaskQueue (they keep their first enqueue time)")
	}
	_, tp := s.resource("TaskQueue")
	rp := asMap(tp["RedrivePolicy"])
	if attOf(rp["deadLetterTargetArn"]) != "DeadLetterQueue.Arn" || fmt.Sprint(rp["maxReceiveCount"]) != fmt.Sprint(tarport.QueueDeliveries) {
		problems = append(problems, fmt.Sprintf("TaskQueue: RedrivePolicy: want deadLetterTargetArn !GetAtt DeadLetterQueue.Arn, maxReceiveCount %d (tarport.QueueDeliveries, the retry budget), got %s", tarport.QueueDeliveries, show(rp)))
	}
	return problems
}

func checkMappings(s *stack) []string {
	var problems []string
	want := map[string]bool{"TaskQueue": false, "DeadLetterQueue": false}
	for _, m := range s.ofType("AWS::Lambda::EventSourceMapping") {
		_, props := s.resource(m)
		typed, _ := s.cfn.GetLambdaEventSourceMappingWithName(m)
		bad := func(format string, args ...any) { problems = append(problems, m+": "+fmt.Sprintf(format, args...)) }
		queue, _ := strings.CutSuffix(attOf(props["EventSourceArn"]), ".Arn")
		if seen, ok := want[queue]; !ok || seen {
			bad("EventSourceArn %s: want one mapping for each of TaskQueue and DeadLetterQueue", show(props["EventSourceArn"]))
		}
		want[queue] = true
		if f := refTo(props["FunctionName"]); f != "AssembleFunction" {
			bad("FunctionName: want !Ref AssembleFunction, got %s", show(props["FunctionName"]))
		}
		if !slices.Contains(typed.FunctionResponseTypes, "ReportBatchItemFailures") {
			bad("FunctionResponseTypes: want ReportBatchItemFailures, else one failed task redoes its whole batch")
		}
		switch queue {
		case "TaskQueue":
			if refTo(props["BatchSize"]) != "AssembleBatchSize" {
				bad("BatchSize: want !Ref AssembleBatchSize")
			}
			if refTo(asMap(props["ScalingConfig"])["MaximumConcurrency"]) != "AssembleMaxConcurrency" {
				bad("ScalingConfig.MaximumConcurrency: want !Ref AssembleMaxConcurrency (registries' rate limits)")
			}
		case "DeadLetterQueue":
			if deref(typed.BatchSize) != 10 {
				bad("BatchSize: want 10, got %d", deref(typed.BatchSize))
			}
		}
	}
	for queue, seen := range want {
		if !seen {
			problems = append(problems, "no event source mapping on "+queue)
		}
	}
	// The parameters stay within what Lambda accepts for SQS.
	for name, lim := range map[string][2]float64{"AssembleBatchSize": {1, 10}, "AssembleMaxConcurrency": {2, 1000}} {
		p, ok := s.cfn.Parameters[name]
		if !ok || p.MinValue == nil || p.MaxValue == nil || *p.MinValue < lim[0] || *p.MaxValue > lim[1] {
			problems = append(problems, fmt.Sprintf("parameter %s: want MinValue/MaxValue within %v..%v", name, lim[0], lim[1]))
		}
	}
	// Every record of a batch runs at once: none waits for a slot until the
	// invocation's deadline fails it.
	if p := s.cfn.Parameters["AssembleBatchSize"]; p.MaxValue == nil || int(*p.MaxValue) > sqsqueue.Concurrency {
		problems = append(problems, fmt.Sprintf("AssembleBatchSize: MaxValue must be at most the handler's %d records at once", sqsqueue.Concurrency))
	}
	if d := s.parameterDefault("AssembleBatchSize"); d != "1" {
		problems = append(problems, "AssembleBatchSize: want default 1 (a task is a whole layer), got "+d)
	}
	return problems
}

func checkWarmSchedule(s *stack) []string {
	var problems []string
	for _, name := range s.ofType("AWS::Serverless::Function") {
		_, props := s.resource(name)
		n := 0
		for ev, e := range asMap(props["Events"]) {
			if asString(asMap(e)["Type"]) != "Schedule" {
				continue
			}
			n++
			if name != "WarmFunction" {
				problems = append(problems, fmt.Sprintf("%s: schedule %s: only the warm function runs on a schedule", name, ev))
			}
			p := asMap(asMap(e)["Properties"])
			if refTo(p["Schedule"]) != "WarmSchedule" || p["Enabled"] == false {
				problems = append(problems, fmt.Sprintf("%s: schedule %s: want enabled, Schedule !Ref WarmSchedule", name, ev))
			}
		}
		if name == "WarmFunction" && n != 1 {
			problems = append(problems, fmt.Sprintf("WarmFunction: want one Schedule event, got %d", n))
		}
	}
	if d := s.parameterDefault("WarmSchedule"); d != "rate(1 hour)" {
		problems = append(problems, "WarmSchedule: want default rate(1 hour), got "+d)
	}
	return problems
}

// CloudFront's managed policies.
const (
	cachingOptimized          = "658327ea-f89d-4fab-a63d-7e88639e58f6"
	cachingDisabled           = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
	allViewerExceptHostHeader = "b689b0a8-53d0-40ab-baf2-68738e2966ac"
)

// cspDirectives must all be in the Content-Security-Policy.
var cspDirectives = []string{
	"default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
	"connect-src 'self'", "font-src 'self'", "object-src 'none'", "base-uri 'none'",
	"frame-ancestors 'none'", "form-action 'self'",
}

// checkDistribution: the UI from the private web bucket through OAC, the
// API under /api/* uncached, strict security headers on both.
func checkDistribution(s *stack) []string {
	dists := s.ofType("AWS::CloudFront::Distribution")
	if len(dists) != 1 {
		return []string{fmt.Sprintf("want one distribution, got %v", dists)}
	}
	dist := dists[0]
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, dist+": "+fmt.Sprintf(format, args...)) }
	_, props := s.resource(dist)
	cfg := asMap(props["DistributionConfig"])
	typed, err := s.cfn.GetCloudFrontDistributionWithName(dist)
	if err != nil || typed.DistributionConfig == nil {
		return []string{dist + ": no DistributionConfig"}
	}
	tcfg := typed.DistributionConfig

	var webOrigin, apiOrigin string
	for _, o := range asList(cfg["Origins"]) {
		o := asMap(o)
		id := asString(o["Id"])
		// The API: its execute-api name, or the operator's domain for it.
		domain := o["DomainName"]
		if fn, arg, ok := intrinsic(domain); ok && fn == "Fn::If" {
			if l := asList(arg); len(l) == 3 && asString(l[0]) == "HasApiDomain" && refTo(l[1]) == "ApiDomainName" {
				domain = l[2]
			}
		}
		if text, _, ok := subOf(domain); ok && text == "${HttpApi}.execute-api.${AWS::Region}.amazonaws.com" {
			apiOrigin = id
			if p := asString(asMap(o["CustomOriginConfig"])["OriginProtocolPolicy"]); p != "https-only" {
				bad("origin %s: OriginProtocolPolicy: want https-only, got %q", id, p)
			}
			// The header the API checks, with the generated secret's value.
			found := false
			for _, h := range asList(o["OriginCustomHeaders"]) {
				h := asMap(h)
				text, _, _ := subOf(h["HeaderValue"])
				found = found || (asString(h["HeaderName"]) == httpapi.OriginSecretHeader && text == "{{resolve:secretsmanager:${OriginSecret}:SecretString}}")
			}
			if !found {
				bad("origin %s: want the custom header %s: !Sub \"{{resolve:secretsmanager:${OriginSecret}:SecretString}}\"", id, httpapi.OriginSecretHeader)
			}
		}
		if bucket, _ := strings.CutSuffix(attOf(o["DomainName"]), ".RegionalDomainName"); bucket == "WebBucket" {
			webOrigin = id
			oac, _ := strings.CutSuffix(attOf(o["OriginAccessControlId"]), ".Id")
			typ, oprops := s.resource(oac)
			oc := asMap(oprops["OriginAccessControlConfig"])
			if typ != "AWS::CloudFront::OriginAccessControl" || oc["SigningBehavior"] != "always" || oc["OriginAccessControlOriginType"] != "s3" || oc["SigningProtocol"] != "sigv4" {
				bad("origin %s: want OriginAccessControlId !GetAtt <an OAC>.Id signing always, sigv4, for s3", id)
			}
			if oai, ok := asMap(o["S3OriginConfig"])["OriginAccessIdentity"]; !ok || oai != "" {
				bad("origin %s: S3OriginConfig.OriginAccessIdentity: want \"\" (OAC, not the legacy identity)", id)
			}
		}
	}
	if webOrigin == "" || apiOrigin == "" {
		bad("want an origin on !GetAtt WebBucket.RegionalDomainName and one on !Sub ${HttpApi}.execute-api.${AWS::Region}.amazonaws.com")
	}

	policies := map[string]bool{}
	dcb := tcfg.DefaultCacheBehavior
	if dcb == nil || dcb.TargetOriginId != webOrigin || dcb.ViewerProtocolPolicy != "redirect-to-https" || deref(dcb.CachePolicyId) != cachingOptimized || !deref(dcb.Compress) {
		bad("DefaultCacheBehavior: want the web origin, redirect-to-https, CachingOptimized, Compress")
	}
	if deref(tcfg.DefaultRootObject) != "index.html" {
		bad("DefaultRootObject: want index.html")
	}
	policies[refTo(asMap(cfg["DefaultCacheBehavior"])["ResponseHeadersPolicyId"])] = true
	api := false
	for i, cb := range tcfg.CacheBehaviors {
		if cb.PathPattern != "/api/*" {
			continue
		}
		api = true
		if cb.TargetOriginId != apiOrigin || apiOrigin == "" {
			bad("/api/*: want the HttpApi origin, got %q", cb.TargetOriginId)
		}
		if deref(cb.CachePolicyId) != cachingDisabled || deref(cb.OriginRequestPolicyId) != allViewerExceptHostHeader {
			bad("/api/*: want CachingDisabled and AllViewerExceptHostHeader")
		}
		if !slices.Contains(cb.AllowedMethods, "POST") {
			bad("/api/*: AllowedMethods lack POST")
		}
		if cb.ViewerProtocolPolicy == "allow-all" {
			bad("/api/*: plain HTTP allowed")
		}
		policies[refTo(asMap(asList(cfg["CacheBehaviors"])[i])["ResponseHeadersPolicyId"])] = true
	}
	if !api {
		bad("no /api/* behavior: the UI calls the API on its own origin")
	}
	if len(policies) != 1 || policies[""] {
		bad("both behaviors want the same !Ref <ResponseHeadersPolicy>")
	}
	for p := range policies {
		typ, pp := s.resource(p)
		sh := asMap(asMap(pp["ResponseHeadersPolicyConfig"])["SecurityHeadersConfig"])
		if typ != "AWS::CloudFront::ResponseHeadersPolicy" {
			continue
		}
		csp := asString(asMap(sh["ContentSecurityPolicy"])["ContentSecurityPolicy"])
		if csp != web.CSP {
			bad("%s: Content-Security-Policy %q is not the local server's (web.CSP)", p, csp)
		}
		for _, d := range cspDirectives {
			if !strings.Contains(csp, d) {
				bad("%s: Content-Security-Policy lacks %q", p, d)
			}
		}
		for _, h := range []string{"StrictTransportSecurity", "ContentTypeOptions", "ReferrerPolicy"} {
			if sh[h] == nil {
				bad("%s: no %s", p, h)
			}
		}
	}

	// The web bucket lets this distribution, and only it, read objects.
	reads := false
	for _, name := range s.ofType("AWS::S3::BucketPolicy") {
		_, bp := s.resource(name)
		if refTo(bp["Bucket"]) != "WebBucket" {
			continue
		}
		for _, st := range statements(bp["PolicyDocument"]) {
			b := st.body
			source, _, _ := subOf(asMap(asMap(b["Condition"])["StringEquals"])["AWS:SourceArn"])
			if b["Effect"] == "Allow" && show(asMap(b["Principal"])["Service"]) == "cloudfront.amazonaws.com" &&
				show(b["Action"]) == getObject && show(b["Resource"]) == "!Sub ${WebBucket.Arn}/*" &&
				strings.HasSuffix(source, ":distribution/${"+dist+"}") {
				reads = true
			}
		}
	}
	if !reads {
		bad("WebBucket's policy: want s3:GetObject on ${WebBucket.Arn}/* for cloudfront.amazonaws.com on condition AWS:SourceArn is this distribution")
	}
	return problems
}

// parameters are the stack's knobs and their defaults (DESIGN.md's where it has one).
var parameters = map[string]string{
	"DockerHubSecretArn":     "",
	"PresignTTL":             "1h",
	"MaxImageBytes":          "64GiB",
	"RateLimitPerMinute":     "100",
	"ApiThrottleRate":        "",
	"ApiThrottleBurst":       "",
	"HubApi":                 "https://hub.docker.com",
	"DockerHubRegistry":      "https://registry-1.docker.io",
	"LogLevel":               "info",
	"LogRetentionDays":       "14",
	"AssembleMemory":         "1769",
	"AssembleMaxConcurrency": "50",
	"AssembleBatchSize":      "1",
	"EntryRetentionDays":     "14",
	"WarmSchedule":           "rate(1 hour)",
	"HotImages":              "",
	"ClientQuotaGiB":         "100",
	"BudgetGiB":              "2048",
	"AccessToken":            "",
	"AlarmEmail":             "",
	"MonthlyBudgetUsd":       "0",
	"ApiReservedConcurrency": "0",
	"ApiDomainName":          "",
	"ApiCertificateArn":      "",
}

// parameterExamples are values each parameter's constraints must accept.
var parameterExamples = map[string][]string{
	"DockerHubSecretArn": {"", "arn:aws:secretsmanager:us-east-1:123456789012:secret:tarport/dockerhub-AbC12d"},
	"PresignTTL":         {"1h", "90m", "1h30m", "168h"},
	"MaxImageBytes":      {"64GiB", "500MB", "1048576"},
	"RateLimitPerMinute": {"1", "100", "6000"},
	"HubApi":             {"https://hub.docker.com", "http://127.0.0.1:8081/hub"},
	"DockerHubRegistry":  {"https://registry-1.docker.io", "http://mirror.internal:5000"},
	"WarmSchedule":       {"rate(1 hour)", "rate(30 minutes)", "cron(0 * * * ? *)"},
	"HotImages":          {"", "nginx:1.27 linux/amd64,redis:7 linux/arm64"},
	"ClientQuotaGiB":     {"0", "100", "9999999"},
	"BudgetGiB":          {"0", "2048", "500"},
	"AlarmEmail":         {"", "ops@example.com", "first.last+tarport@mail.example.co.uk"},
	"ApiDomainName":      {"", "api.tarport.example.com", "tarport-api.example.io"},
	"ApiCertificateArn":  {"", "arn:aws:acm:us-east-1:123456789012:certificate/0a1b2c3d-1234-5678-9abc-0123456789ab"},
	"AccessToken":        {"", "0123456789abcdef", "h7R-x~2!kQ9_vP4#mL8$"},
}

// noDefaultCheck are parameters whose default this test leaves to the template.
var noDefaultCheck = []string{"ApiThrottleRate", "ApiThrottleBurst"}

// checkParameters: the knobs exist with their defaults, every default
// passes its own constraints (else a deploy without overrides fails), and
// every parameter is used.
func checkParameters(s *stack) []string {
	var problems []string
	problems = append(problems, diff("parameters", slices.Collect(maps.Keys(s.cfn.Parameters)), slices.Collect(maps.Keys(parameters)))...)
	used := map[string]bool{}
	walk(asMap(s.raw), "", func(_ string, m map[string]any) {
		if r := refTo(m); r != "" {
			used[r] = true
		}
		if text, _, ok := subOf(m); ok {
			for _, v := range subVariable.FindAllStringSubmatch(text, -1) {
				used[v[1]] = true
			}
		}
	})
	for _, name := range slices.Sorted(maps.Keys(s.cfn.Parameters)) {
		p := s.cfn.Parameters[name]
		bad := func(format string, args ...any) { problems = append(problems, name+": "+fmt.Sprintf(format, args...)) }
		if !used[name] {
			bad("never used")
		}
		if p.Default == nil {
			bad("no default: a plain `make deploy` must work")
			continue
		}
		for _, ex := range parameterExamples[name] {
			if p.AllowedPattern != nil && !regexp.MustCompile(`^(?:`+*p.AllowedPattern+`)$`).MatchString(ex) {
				bad("AllowedPattern %s refuses the valid value %q", *p.AllowedPattern, ex)
			}
		}
		def := fmt.Sprint(p.Default)
		if want, ok := parameters[name]; ok && !slices.Contains(noDefaultCheck, name) && def != want {
			bad("default: want %q, got %q", want, def)
		}
		if p.AllowedPattern != nil && !regexp.MustCompile(`^(?:`+*p.AllowedPattern+`)$`).MatchString(def) {
			bad("default %q does not match its AllowedPattern %s", def, *p.AllowedPattern)
		}
		if len(p.AllowedValues) > 0 && !slices.ContainsFunc(p.AllowedValues, func(v any) bool { return fmt.Sprint(v) == def }) {
			bad("default %q is not among its AllowedValues", def)
		}
		if n, ok := p.Default.(float64); ok && ((p.MinValue != nil && n < *p.MinValue) || (p.MaxValue != nil && n > *p.MaxValue)) {
			bad("default %v is out of its MinValue/MaxValue", n)
		}
	}
	if _, ok := asMap(s.raw["Conditions"])["HasDockerHubSecret"]; !ok {
		problems = append(problems, "no condition HasDockerHubSecret: the Docker Hub secret is optional")
	}
	return problems
}

// outputs are what make deploy and the docs read, as the template writes them.
var outputs = map[string]string{
	"AlarmTopicArn":   "!Ref AlarmTopic",
	"ApiDomainTarget": "!GetAtt ApiDomain.RegionalDomainName",
	"DashboardUrl":    "!Sub https://${AWS::Region}.console.aws.amazon.com/cloudwatch/home?region=${AWS::Region}#dashboards:name=${Dashboard}",
	"SiteUrl":         "!Sub https://${WebDistribution.DomainName}",
	"ApiUrl":          "!Sub https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}",
	"WebBucketName":   "!Ref WebBucket",
	"DistributionId":  "!Ref WebDistribution",
	"DataBucketName":  "!Ref DataBucket",
	"TableName":       "!Ref Table",
	"QueueUrl":        "!Ref TaskQueue",
}

func checkOutputs(s *stack) []string {
	var got, want []string
	for name, o := range asMap(s.raw["Outputs"]) {
		got = append(got, name+" = "+show(asMap(o)["Value"]))
	}
	for name, v := range outputs {
		want = append(want, name+" = "+v)
	}
	return diff("outputs", got, want)
}

// deployOutput matches the stack outputs the deploy target reads.
var deployOutput = regexp.MustCompile(`output ([A-Za-z0-9]+)\)`)

// checkDeploy: samconfig.toml lets sam deploy create the roles, and
// make deploy reads outputs the template has.
func checkDeploy(s *stack) []string {
	var problems []string
	conf := s.text["samconfig.toml"]
	for _, line := range []string{`version = 0.1`, `stack_name = "tarport"`, `resolve_s3 = true`, `confirm_changeset = false`} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(line) + `\s*$`).MatchString(conf) {
			problems = append(problems, "samconfig.toml: want the line "+line)
		}
	}
	if len(s.ofType("AWS::IAM::Role")) > 0 && !regexp.MustCompile(`(?m)^capabilities = ".*\bCAPABILITY_IAM\b.*"`).MatchString(conf) {
		problems = append(problems, "samconfig.toml: the template creates IAM roles: capabilities must include CAPABILITY_IAM")
	}
	mk := s.text["Makefile"]
	if !regexp.MustCompile(`(?m)^deploy[ \t]*:`).MatchString(mk) {
		return append(problems, "Makefile: no deploy target")
	}
	read := deployOutput.FindAllStringSubmatch(mk, -1)
	if len(read) == 0 {
		problems = append(problems, "Makefile: deploy reads no stack output")
	}
	for _, m := range read {
		if _, ok := asMap(s.raw["Outputs"])[m[1]]; !ok {
			problems = append(problems, "Makefile: deploy reads output "+m[1]+", which the template lacks")
		}
	}
	for _, cmd := range []string{"command -v sam", "command -v aws", "sam build", "sam deploy", "aws s3 sync web/ ", "--delete", "aws cloudfront create-invalidation", "--paths '/*'"} {
		if !strings.Contains(mk, cmd) {
			problems = append(problems, "Makefile: deploy lacks "+cmd)
		}
	}
	return problems
}
