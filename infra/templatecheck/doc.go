// Package templatecheck holds the checks of the repository's template.yaml, the
// SAM stack tarport deploys to AWS: its tests parse the template with
// goformation and hold it to the Makefile's build targets, shared/dynamo's
// table schema, the configuration names of DESIGN.md and least privilege.
// No SAM CLI or cfn-lint runs here; these tests stand in for them.
package templatecheck
