package webtest

import (
	"io/fs"
	"regexp"
	"strings"
	"testing"

	"github.com/tarport/tarport/web"
)

// TestCredentialsNeverInAURL: the Quick download form posts, and its
// credential inputs have no name: should the page's script not run (still
// loading, blocked), a native submit can put neither the username nor the
// password in a URL, a history entry or an access log.
func TestCredentialsNeverInAURL(t *testing.T) {
	t.Parallel()
	page, err := fs.ReadFile(web.Files, "index.html")
	if err != nil {
		t.Fatal(err)
	}
	form := regexp.MustCompile(`<form id="quick"[^>]*>`).FindString(string(page))
	if !strings.Contains(form, `method="post"`) {
		t.Errorf("the quick form %q does not post", form)
	}
	for _, id := range []string{"quick-username", "quick-password"} {
		input := regexp.MustCompile(`<input id="` + id + `"[^>]*>`).FindString(string(page))
		if input == "" || strings.Contains(input, " name=") {
			t.Errorf("input %s: %q (want it present, without a name)", id, input)
		}
	}
}
