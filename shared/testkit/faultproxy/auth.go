package faultproxy

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Service is the service name in challenges and token requests, as
// "registry.docker.io" is for Docker Hub.
const Service = "registry.test"

// DefaultTokenLifetime is Docker Hub's anonymous token lifetime.
const DefaultTokenLifetime = 300 * time.Second

// grant is what a token allows: pulls of these repositories until expires.
type grant struct {
	repos   map[string]bool
	expires time.Time
}

// RequireAuth makes repos private: only a token requested with these basic-auth
// credentials grants pulls of them. With no repos every repository is private.
// Wrong credentials get 401 at /token, as at auth.docker.io; an anonymous token
// simply leaves private repos out of its grant, so the registry answers 401.
func (p *Proxy) RequireAuth(user, password string, repos ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.user, p.password = user, password
	p.allPriv = len(repos) == 0
	p.private = map[string]bool{}
	for _, r := range repos {
		p.private[r] = true
	}
}

// TokenLifetime sets the lifetime of tokens issued from now on (e.g. 2 s to
// force a refresh mid-pull). Tokens already issued keep theirs.
func (p *Proxy) TokenLifetime(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tokenLife = d
}

// ExpireAllTokens makes every token issued so far expired.
func (p *Proxy) ExpireAllTokens() {
	p.mu.Lock()
	defer p.mu.Unlock()
	past := time.Now().Add(-time.Second)
	for tok, g := range p.tokens {
		g.expires = past
		p.tokens[tok] = g
	}
}

// serveToken is the auth.docker.io stand-in: GET /token?service=&scope=
// (and the POST form, for clients that use it).
func (p *Proxy) serveToken(w *tracked, r *http.Request) {
	if p.injectStatus(w, Token) {
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	_ = r.ParseForm()
	user, pass, hasCreds := r.BasicAuth()
	if !hasCreds && r.PostForm.Get("grant_type") == "password" {
		user, pass, hasCreds = r.PostForm.Get("username"), r.PostForm.Get("password"), true
	}

	p.mu.Lock()
	authed := hasCreds && p.user != "" && user == p.user && pass == p.password
	if hasCreds && !authed {
		p.stats.TokensDenied++
		p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = fmt.Fprint(w, `{"details":"incorrect username or password"}`)
		return
	}
	repos := map[string]bool{}
	// Scopes come as repeated parameters, or space-separated in one (OAuth form).
	for _, s := range r.Form["scope"] {
		for _, scope := range strings.Fields(s) {
			name, ok := pullScope(scope)
			if ok && (authed || !p.isPrivate(name)) {
				repos[name] = true
			}
		}
	}
	now := time.Now()
	token := rand.Text()
	life := p.tokenLife
	p.tokens[token] = grant{repos: repos, expires: now.Add(life)}
	p.stats.TokensIssued++
	p.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"token":        token,
		"access_token": token,
		// Rounded up so a sub-second lifetime does not read as "no expiry".
		"expires_in": int(math.Ceil(life.Seconds())),
		"issued_at":  now.UTC().Format(time.RFC3339Nano),
	})
}

// pullScope returns the repository of a "repository:<name>:<actions>" scope
// that includes pull.
func pullScope(scope string) (string, bool) {
	rest, ok := strings.CutPrefix(scope, "repository:")
	if !ok {
		return "", false
	}
	i := strings.LastIndex(rest, ":")
	if i < 0 {
		return "", false
	}
	actions := strings.Split(rest[i+1:], ",")
	return rest[:i], slices.Contains(actions, "pull") || slices.Contains(actions, "*")
}

// isPrivate needs p.mu held.
func (p *Proxy) isPrivate(repo string) bool { return p.allPriv || p.private[repo] }

// authorize checks the bearer token for repo ("" for /v2/) and answers 401
// with Hub's challenge when it does not do.
func (p *Proxy) authorize(w *tracked, r *http.Request, repo string) bool {
	token, isBearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	p.mu.Lock()
	g, known := p.tokens[token]
	problem := "" // the challenge's error= (RFC 6750), as distribution's token auth sends it
	switch {
	case !isBearer || !known:
	case time.Now().After(g.expires):
		problem = "invalid_token"
		p.stats.ExpiredTokens++
	case repo != "" && !g.repos[repo]:
		problem = "insufficient_scope"
	default:
		p.mu.Unlock()
		return true
	}
	p.stats.Unauthorized++
	p.mu.Unlock()

	challenge := fmt.Sprintf(`Bearer realm="%s/token",service="%s"`, p.URL(), Service)
	var detail any
	if repo != "" {
		challenge += fmt.Sprintf(`,scope="repository:%s:pull"`, repo)
		detail = []map[string]string{{"Type": "repository", "Class": "", "Name": repo, "Action": "pull"}}
	}
	if problem != "" {
		challenge += fmt.Sprintf(`,error="%s"`, problem)
	}
	w.Header().Set("Www-Authenticate", challenge)
	writeError(w, http.StatusUnauthorized, "UNAUTHORIZED", "authentication required", detail)
	return false
}
