package templatecheck

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/tarport/tarport/shared/metrics"
	"github.com/tarport/tarport/shared/settings"
)

// statefulTypes hold data or secrets: what happens to them on delete and on
// replacement must be written down, not left to CloudFormation's default.
var statefulTypes = []string{"AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::SQS::Queue", "AWS::SecretsManager::Secret", "AWS::Logs::LogGroup"}

func checkStatefulPolicies(s *stack) []string {
	var problems []string
	for _, typ := range statefulTypes {
		for _, name := range s.ofType(typ) {
			r := asMap(asMap(s.raw["Resources"])[name])
			for _, key := range []string{"DeletionPolicy", "UpdateReplacePolicy"} {
				if v := asString(r[key]); v != "Delete" && v != "Retain" && v != "Snapshot" {
					problems = append(problems, fmt.Sprintf("%s (%s): no explicit %s", name, typ, key))
				}
			}
		}
	}
	return problems
}

// globalNames are the resources whose names are global to the account
// (CloudFront's, dashboards): the same stack name deployed in a second
// region must not collide.
var globalNames = map[string]string{
	"AWS::CloudFront::OriginAccessControl":   "OriginAccessControlConfig.Name",
	"AWS::CloudFront::ResponseHeadersPolicy": "ResponseHeadersPolicyConfig.Name",
	"AWS::CloudWatch::Dashboard":             "DashboardName",
}

func checkRegionSafeNames(s *stack) []string {
	var problems []string
	for typ, path := range globalNames {
		for _, name := range s.ofType(typ) {
			_, props := s.resource(name)
			var v any = props
			for _, key := range strings.Split(path, ".") {
				v = asMap(v)[key]
			}
			if text, _, ok := subOf(v); !ok || !strings.Contains(text, "${AWS::StackName}") || !strings.Contains(text, "${AWS::Region}") {
				problems = append(problems, fmt.Sprintf("%s %s: %s %s must hold ${AWS::StackName} and ${AWS::Region}", typ, name, path, show(v)))
			}
		}
	}
	return problems
}

// wantAlarms are the alarms issue 10 asks for, by logical id.
var wantAlarms = []string{"DeadLettersAlarm", "JobFailureAlarm", "Api5xxAlarm", "LambdaErrorsAlarm", "LambdaThrottlesAlarm", "OldestTaskAlarm", "BudgetAlarm"}

// checkAlarms: the alarms exist, go to the topic, and every tarport metric
// an alarm reads is one the code writes, with a dimension set its EMF lines
// carry (an alarm on a name or dimension nobody writes never fires).
func checkAlarms(s *stack) []string {
	var problems []string
	alarms := s.ofType("AWS::CloudWatch::Alarm")
	for _, want := range wantAlarms {
		if !slices.Contains(alarms, want) {
			problems = append(problems, "no alarm "+want)
		}
	}
	defs := map[string]metrics.Def{}
	for _, d := range metrics.All {
		defs[d.EMF] = d
	}
	checkMetric := func(alarm string, m map[string]any) {
		if asString(m["Namespace"]) != "tarport" {
			return
		}
		name := asString(m["MetricName"])
		d, ok := defs[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("%s: tarport metric %s is not one the code writes", alarm, name))
			return
		}
		var dims []string
		for _, dv := range asList(m["Dimensions"]) {
			dims = append(dims, asString(asMap(dv)["Name"]))
		}
		slices.Sort(dims)
		labels, rollup := slices.Sorted(slices.Values(d.Labels)), slices.Sorted(slices.Values(d.Rollup))
		if !slices.Equal(dims, labels) && (len(rollup) == 0 || !slices.Equal(dims, rollup)) {
			problems = append(problems, fmt.Sprintf("%s: %s by %v: the code writes it by %v (or %v)", alarm, name, dims, d.Labels, d.Rollup))
		}
	}
	for _, name := range alarms {
		_, props := s.resource(name)
		actions := asList(props["AlarmActions"])
		if len(actions) != 1 || refTo(actions[0]) != "AlarmTopic" {
			problems = append(problems, name+": AlarmActions: want [!Ref AlarmTopic]")
		}
		if props["TreatMissingData"] != "notBreaching" {
			problems = append(problems, name+": TreatMissingData: want notBreaching (no traffic is no trouble)")
		}
		checkMetric(name, props)
		for _, q := range asList(props["Metrics"]) {
			checkMetric(name, asMap(asMap(asMap(q)["MetricStat"])["Metric"]))
		}
	}
	// The dashboard's fixed metrics and searches name metrics the code writes.
	for _, name := range s.ofType("AWS::CloudWatch::Dashboard") {
		_, props := s.resource(name)
		body, _, _ := subOf(props["DashboardBody"])
		found := 0
		for _, m := range regexp.MustCompile(`\["tarport", "(\w+)"|\{tarport,[^}]*\} [^']*?MetricName=\\"(\w+)\\"`).FindAllStringSubmatch(body, -1) {
			found++
			if metric := m[1] + m[2]; defs[metric].EMF == "" {
				problems = append(problems, fmt.Sprintf("dashboard %s: tarport metric %s is not one the code writes", name, metric))
			}
		}
		if found < len(metrics.All)-1 {
			problems = append(problems, fmt.Sprintf("dashboard %s: %d tarport metrics shown; the pattern no longer reads the body?", name, found))
		}
	}
	return problems
}

// codeParameter ties a parameter to the variable it sets, and lists values
// for which the template and settings.Parse must agree, and forms only
// the code takes (the template documents the narrower form).
type codeParameter struct {
	env      string
	value    func(v string) string // the variable's value for the parameter's
	values   []string
	codeOnly []string
}

var codeParameters = map[string]codeParameter{
	"PresignTTL": {env: "TARPORT_PRESIGN_TTL",
		values:   []string{"1h", "90m", "1h30m", "168h", "169h", "0s", "0h", "0m", "1s", "604800s", "604801s", "10080m", "10081m", "167h59m", "168h1m", "60", "-1h", "", "soon", "1h 30m", "0ms"},
		codeOnly: []string{"168h0m", "1500ms", "1ms", "1.5h", "1h0m0s", "2h0s", "0h30m", "167h60m", "01h", "30m0s"}},
	"MaxImageBytes": {env: "TARPORT_MAX_IMAGE_BYTES",
		values:   []string{"64GiB", "500MB", "1048576", "1B", "0", "0GiB", "-1GiB", "1.5GiB", "64XB", "999999999999999999", "9999999999999999999", "8388608TiB", "999999TiB", "999999TB", "9999999TB", "999999999GiB", "9999999999GiB", ""},
		codeOnly: []string{"064GiB", "64 GiB", "9000000000000000KB", "8388607TiB"}},
	"RateLimitPerMinute": {env: "TARPORT_RATE_LIMIT_PER_MINUTE",
		values:   []string{"1", "100", "6000", "0", "-5", "1.5", "many", "999999999", "99999999999999999999", ""},
		codeOnly: []string{"1000000000", "+5", "007"}},
	"ClientQuotaGiB": {env: "TARPORT_CLIENT_QUOTA_PER_DAY", value: func(v string) string { return v + "GiB" },
		values:   []string{"0", "100", "9999999", "1.5", "-1", ""},
		codeOnly: []string{"10000000", "00", "01"}},
	"BudgetGiB": {env: "TARPORT_BUDGET_PER_DAY", value: func(v string) string { return v + "GiB" },
		values:   []string{"0", "2048", "1", "2.5", "x", ""},
		codeOnly: []string{"99999999"}},
	"DockerHubRegistry": {env: "TARPORT_DOCKERHUB_REGISTRY",
		values:   []string{"https://registry-1.docker.io", "http://mirror.internal:5000", "mirror.example.com", "ftp://m.example.com", "https://user:pw@m.example.com", "http://[::1", "https://", "http://m.example.com:5000:1", ""},
		codeOnly: []string{"https://[2001:db8::1]:5000", "https://m.example.com/", "https://m.example.com/v2"}},
	"LogLevel": {env: "TARPORT_LOG_LEVEL",
		values:   []string{"debug", "info", "warn", "error", "loud", "trace"},
		codeOnly: []string{"DEBUG", "Info", "warn+1", "error-4"}},
	"HotImages": {env: "TARPORT_HOT_IMAGES",
		values:   []string{"", "nginx:1.27 linux/amd64,redis:7 linux/arm64", "nginx", "nginx linux/amd64 extra", " a , b c ,", "a,,b", "x y z,a"},
		codeOnly: nil},
}

// checkParametersMatchCode: a parameter the code reads accepts exactly
// the values the code accepts (else a stack deploys and then every
// function fails at start), but for the listed forms only the code takes.
func checkParametersMatchCode(s *stack) []string {
	var problems []string
	for name, cp := range codeParameters {
		p, ok := s.cfn.Parameters[name]
		if !ok {
			problems = append(problems, "no parameter "+name)
			continue
		}
		accepts := func(v string) bool {
			if p.AllowedPattern != nil && !regexp.MustCompile(`^(?:`+*p.AllowedPattern+`)$`).MatchString(v) {
				return false
			}
			if len(p.AllowedValues) > 0 && !slices.ContainsFunc(p.AllowedValues, func(a any) bool { return fmt.Sprint(a) == v }) {
				return false
			}
			return true
		}
		codeTakes := func(v string) bool {
			if cp.value != nil {
				v = cp.value(v)
			}
			_, err := settings.Parse(func(k string) string {
				if k == cp.env {
					return v
				}
				return ""
			})
			return err == nil
		}
		for _, v := range cp.values {
			// An empty value is the code's default; the template always
			// passes its own default, which checkParameters holds valid.
			if v == "" {
				if accepts(v) && cp.env != "TARPORT_HOT_IMAGES" {
					problems = append(problems, fmt.Sprintf("%s: accepts an empty value", name))
				}
				continue
			}
			if t, c := accepts(v), codeTakes(v); t != c {
				problems = append(problems, fmt.Sprintf("%s = %q: the template accepts it: %v, settings.Parse accepts it: %v", name, v, t, c))
			}
		}
		for _, v := range cp.codeOnly {
			if !codeTakes(v) {
				problems = append(problems, fmt.Sprintf("%s = %q is listed as taken by the code only, but the code refuses it", name, v))
			}
			if accepts(v) {
				problems = append(problems, fmt.Sprintf("%s = %q is listed as taken by the code only, but the template accepts it: move it to values", name, v))
			}
		}
	}
	return problems
}
