// Package depcheck holds the repository's import rules as a test, in the
// manner of go-containerregistry's depcheck: the domain (shared/tarport)
// and the planner (shared/tarplan) stay free of the rest, adapters never
// import each other (registry's use of netguard aside), and production
// code never imports test kits or the infra wiring. Its test fails when
// someone adds a forbidden import.
package depcheck
