package e2e_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orgforge/orgforge/controllers"
	"github.com/orgforge/orgforge/internal/testutil"
)

// TestEditedKeysTheCacheKeepsAsADigestAreWrittenBack: the manager's cache keeps the keys of the operator's Secrets that it only
// writes as one digest (controllers.TransformSecret): an edit of any of
// them, a removal, or a key added must still be seen and written back. A
// write that carried the digest's key would be refused: '/' may not appear
// in a data key.
func TestEditedKeysTheCacheKeepsAsADigestAreWrittenBack(t *testing.T) {
	// A resync an hour away: only the watch of the Secret, which sees the
	// digest change, can bring the repair within the test.
	startOperatorSettings(t, nil, nil, func(s *controllers.Settings) { s.ResyncPeriod = time.Hour })
	ctx := context.Background()
	o := applyReady(t, testutil.NewOrg("romeo"))
	want := map[string]map[string]string{}
	for _, name := range []string{"romeo-database", "romeo-storage"} {
		want[name] = map[string]string{}
		for k, v := range secret(t, o, name).Data {
			want[name][k] = string(v)
		}
	}

	// Each step alone: values edited in place, then keys removed and added.
	steps := []map[string]map[string]any{
		{
			"romeo-database": {"uri": "postgresql://elsewhere:5432/other", "host": "elsewhere"},
			"romeo-storage":  {"endpoint": "http://elsewhere:7070"},
		},
		{
			"romeo-database": {"jdbc-url": nil, "note": "added by hand"},
			"romeo-storage":  {"bucket": nil},
		},
	}
	for i, edits := range steps {
		for name, edit := range edits {
			data := map[string]any{}
			for k, v := range edit {
				if v != nil {
					v = base64.StdEncoding.EncodeToString([]byte(v.(string)))
				}
				data[k] = v
			}
			if err := mergePatchSecret(ctx, o.Status.Namespace, name, map[string]any{"data": data}); err != nil {
				t.Fatal(err)
			}
		}
		for name := range edits {
			testutil.Eventually(t, 30*time.Second, fmt.Sprintf("Secret %s written back after edit %d", name, i+1), func() (bool, string) {
				got := map[string]string{}
				for k, v := range secret(t, o, name).Data {
					got[k] = string(v)
				}
				diff := cmp.Diff(want[name], got)
				return diff == "", diff
			})
		}
	}
	waitReady(t, "romeo")
	if err := login(ctx, want["romeo-database"]["uri"]); err != nil {
		t.Errorf("the Secret's login does not work after the repair: %v", err)
	}
}
