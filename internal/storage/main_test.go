package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/go-logr/logr/testr"

	"github.com/orgforge/orgforge/internal/devstack"
)

// iamDelay is how long the shared stack's S3 refuses a new access key, as
// S3 on AWS may while IAM propagates it (devstack.S3Options.IAMDelay).
const iamDelay = 10 * time.Second

// stack is the versitygw gateway and IAM service the package's tests share,
// each under its own prefixes and IAM users. It starts with the first test
// that needs it, so that the fuzzer's workers and the pure tests run without.
var (
	stack     *devstack.S3
	stackErr  error
	stackOnce sync.Once
	stackDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if stack != nil {
		if err := stack.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "stopping versitygw: %v\n", err)
		}
	}
	if stackDir != "" {
		_ = os.RemoveAll(stackDir)
	}
	os.Exit(code)
}

// sharedStack starts the package's versitygw once and returns it.
func sharedStack(t testing.TB) *devstack.S3 {
	t.Helper()
	stackOnce.Do(func() {
		if stackDir, stackErr = os.MkdirTemp("", "orgforge-storage-"); stackErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		stack, stackErr = devstack.StartS3With(ctx, stackDir, devstack.S3Options{IAMDelay: iamDelay})
	})
	if stackErr != nil {
		t.Fatalf("starting versitygw: %v", stackErr)
	}
	return stack
}

// testConfig points at the shared stack with its root credentials.
func testConfig(t testing.TB) Config {
	sharedStack(t)
	return Config{
		Bucket:          stack.Bucket,
		Region:          stack.Region,
		Endpoint:        stack.Endpoint,
		IAMEndpoint:     stack.IAMEndpoint,
		UsePathStyle:    true,
		AccessKeyID:     stack.AccessKey,
		SecretAccessKey: stack.SecretKey,
	}
}

func newTestService(t *testing.T) *Service {
	t.Helper()
	s, err := New(t.Context(), testConfig(t), testr.New(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

// newRecordedService is a service whose every HTTP request is recorded.
func newRecordedService(t *testing.T) (*Service, *recorder) {
	t.Helper()
	return newRecordedServiceWith(t, testConfig(t))
}

// newRecordedServiceWith is newRecordedService with cfg.
func newRecordedServiceWith(t *testing.T, cfg Config) (*Service, *recorder) {
	t.Helper()
	rec := &recorder{}
	s, err := newService(t.Context(), cfg, testr.New(t), func(next http.RoundTripper) http.RoundTripper {
		rec.next = next
		return rec
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(s.Close)
	rec.reset()
	return s, rec
}

// recorder notes each request as "S3 <method> <path>" or "IAM <Action>",
// and the parameters of each IAM request as they were sent.
type recorder struct {
	next  http.RoundTripper
	mu    sync.Mutex
	calls []string
	forms []url.Values
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	call := "S3 " + req.Method + " " + req.URL.Path
	var form url.Values
	if strings.HasPrefix(req.Header.Get("Content-Type"), "application/x-www-form-urlencoded") && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
		if f, err := url.ParseQuery(string(body)); err == nil && f.Get("Action") != "" {
			call, form = "IAM "+f.Get("Action"), f
		}
	}
	r.mu.Lock()
	r.calls = append(r.calls, call)
	if form != nil {
		r.forms = append(r.forms, form)
	}
	r.mu.Unlock()
	return r.next.RoundTrip(req)
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = nil
	r.forms = nil
}

// sent returns the parameters of every recorded IAM request of action, in
// the order they were sent.
func (r *recorder) sent(action string) []url.Values {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []url.Values
	for _, f := range r.forms {
		if f.Get("Action") == action {
			out = append(out, f)
		}
	}
	return out
}

// writes lists the recorded requests that could change something.
func (r *recorder) writes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, c := range r.calls {
		switch {
		case strings.HasPrefix(c, "IAM Get"), strings.HasPrefix(c, "IAM List"),
			strings.HasPrefix(c, "S3 GET "), strings.HasPrefix(c, "S3 HEAD "):
		default:
			out = append(out, c)
		}
	}
	return out
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// putObject writes data at key in the shared bucket with the root key.
func putObject(ctx context.Context, key string, data []byte) error {
	_, err := stack.RootClient().PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(stack.Bucket), Key: aws.String(key), Body: bytes.NewReader(data),
	})
	return err
}

// getObject reads the object at key in the shared bucket with the root key;
// a missing one is an error for which isNoSuchKey holds.
func getObject(ctx context.Context, key string) ([]byte, error) {
	out, err := stack.RootClient().GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(stack.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, err
	}
	defer out.Body.Close()
	return io.ReadAll(out.Body)
}
