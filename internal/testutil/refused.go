package testutil

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Refusal is an Organization the API server must refuse at admission, and
// a part of the message that must say why.
type Refusal struct {
	Obj     *unstructured.Unstructured
	Message string
}

// NumberedExtensions is n distinct extension names, ext0 onwards, for a
// spec with too many.
func NumberedExtensions(n int) []any {
	out := make([]any, n)
	for i := range out {
		out[i] = fmt.Sprintf("ext%d", i)
	}
	return out
}

// CheckRefused creates r.Obj with c and fails t unless the API server
// refuses it as Invalid with a message that contains r.Message. An object
// the API server accepted is deleted again.
func CheckRefused(t testing.TB, c client.Client, r Refusal) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := c.Create(ctx, r.Obj)
	if err == nil {
		_ = c.Delete(ctx, r.Obj)
		t.Fatalf("accepted; want a refusal mentioning %q", r.Message)
	}
	if !apierrors.IsInvalid(err) {
		t.Fatalf("refused, but not as Invalid: %v", err)
	}
	if !strings.Contains(err.Error(), r.Message) {
		t.Errorf("message %q does not say %q", err.Error(), r.Message)
	}
}
