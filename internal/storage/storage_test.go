package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/go-logr/logr/testr"

	"github.com/orgforge/orgforge/internal/devstack"
	"github.com/orgforge/orgforge/internal/retry"
)

// startupLimit is how long New may take to give up, by the operator's
// start-up contract.
const startupLimit = 15 * time.Second

func TestNewConnectsAndReportsHealthy(t *testing.T) {
	s := newTestService(t)
	if err := s.HealthCheck(t.Context()); err != nil {
		t.Errorf("HealthCheck: %v", err)
	}
	got := []string{s.Name(), s.Bucket(), s.Region(), s.Endpoint()}
	want := []string{"storage", stack.Bucket, stack.Region, stack.Endpoint}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Name, Bucket, Region, Endpoint = %q, want %q", got, want)
	}
}

// checkStartupError asserts what an operator needs from a failed New: an
// error, soon, naming where and why, without the secret.
func checkStartupError(t *testing.T, err error, elapsed time.Duration, secret string, mentions ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("New succeeded, want an error")
	}
	if elapsed > startupLimit {
		t.Errorf("New took %s to fail, want at most %s", elapsed, startupLimit)
	}
	msg := err.Error()
	if strings.Contains(msg, secret) {
		t.Errorf("the error holds the secret key: %s", msg)
	}
	for _, m := range mentions {
		if !strings.Contains(msg, m) {
			t.Errorf("the error does not mention %q: %s", m, msg)
		}
	}
}

func TestNewReportsAStoppedGateway(t *testing.T) {
	stopped, err := devstack.StartS3(t.Context(), t.TempDir())
	if err != nil {
		t.Fatalf("StartS3: %v", err)
	}
	t.Cleanup(func() { _ = stopped.Close() })
	cfg := Config{
		Bucket: stopped.Bucket, Region: stopped.Region, Endpoint: stopped.Endpoint, IAMEndpoint: stopped.IAMEndpoint,
		UsePathStyle: true, AccessKeyID: stopped.AccessKey, SecretAccessKey: stopped.SecretKey,
	}
	s, err := New(t.Context(), cfg, testr.New(t))
	if err != nil {
		t.Fatalf("New while running: %v", err)
	}
	defer s.Close()
	if err := stopped.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	if err := s.HealthCheck(t.Context()); Classify(err) != retry.ClassNetwork {
		t.Errorf("HealthCheck of a stopped gateway: err = %v (class %q), want a network error", err, Classify(err))
	}

	start := time.Now()
	_, err = New(t.Context(), cfg, testr.New(t))
	checkStartupError(t, err, time.Since(start), stopped.SecretKey,
		"s3 at "+stopped.Endpoint, "iam at "+stopped.IAMEndpoint, "connection refused")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("err = %v, want it to wrap ECONNREFUSED", err)
	}
}

func TestNewReportsAMissingBucket(t *testing.T) {
	cfg := testConfig(t)
	cfg.Bucket = "orgforge-no-such-bucket"
	start := time.Now()
	_, err := New(t.Context(), cfg, testr.New(t))
	checkStartupError(t, err, time.Since(start), cfg.SecretAccessKey,
		"s3 at "+cfg.Endpoint, `bucket "orgforge-no-such-bucket" does not exist`)
	if strings.Contains(err.Error(), "iam at") {
		t.Errorf("the error blames IAM, which works: %v", err)
	}
}

func TestNewReportsWrongCredentials(t *testing.T) {
	cfg := testConfig(t)
	cfg.SecretAccessKey = "not-the-secret-" + cfg.SecretAccessKey[:4]
	start := time.Now()
	_, err := New(t.Context(), cfg, testr.New(t))
	checkStartupError(t, err, time.Since(start), cfg.SecretAccessKey, "s3 at "+cfg.Endpoint, "iam at "+cfg.IAMEndpoint)
	if Classify(err) != retry.ClassPermission {
		t.Errorf("class = %q, want permission: %v", Classify(err), err)
	}
}

// TestNewGivesUpOnAServerThatNeverAnswers uses a listener that accepts
// connections and never replies, the worst case for a start-up deadline.
func TestNewGivesUpOnAServerThatNeverAnswers(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { <-done; _ = c.Close() }()
		}
	}()

	cfg := testConfig(t)
	cfg.Endpoint = "http://" + l.Addr().String()
	cfg.IAMEndpoint = cfg.Endpoint
	start := time.Now()
	_, err = New(t.Context(), cfg, testr.New(t))
	checkStartupError(t, err, time.Since(start), cfg.SecretAccessKey, "s3 at "+cfg.Endpoint, "iam at "+cfg.Endpoint)
}

func TestNewRefusesABadConfigurationWithoutCallingAnything(t *testing.T) {
	cases := map[string]func(*Config){
		"no bucket":             func(c *Config) { c.Bucket = "" },
		"endpoint with no host": func(c *Config) { c.Endpoint = "127.0.0.1:9000" },
		"endpoint with creds":   func(c *Config) { c.Endpoint = "http://user:" + c.SecretAccessKey + "@127.0.0.1:9000" },
		"secret without id":     func(c *Config) { c.AccessKeyID = "" },
		"relative IAM path":     func(c *Config) { c.IAMPath = "orgforge/" },
	}
	for name, mutate := range cases {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(t)
			mutate(&cfg)
			_, err := New(t.Context(), cfg, testr.New(t))
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			if err != nil && strings.Contains(err.Error(), stack.SecretKey) {
				t.Errorf("the error holds the secret key: %v", err)
			}
		})
	}
}

// apiError is an error as the SDK returns it for a response with status and
// code.
func apiError(status int, code string) error {
	var inner error = &smithy.GenericAPIError{Code: code, Message: "test"}
	if code == "" {
		inner = fmt.Errorf("http response error StatusCode: %d", status)
	}
	return &smithy.OperationError{ServiceID: "S3", OperationName: "Test", Err: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}},
		Err:      inner,
	}}
}

func TestClassify(t *testing.T) {
	cases := map[string]struct {
		err  error
		want retry.Class
	}{
		"nil":                       {nil, retry.ClassNone},
		"SlowDown 503":              {apiError(503, "SlowDown"), retry.ClassThrottled},
		"Throttling 400":            {apiError(400, "Throttling"), retry.ClassThrottled},
		"RequestLimitExceeded":      {apiError(400, "RequestLimitExceeded"), retry.ClassThrottled},
		"429 without a code":        {apiError(429, ""), retry.ClassThrottled},
		"InternalError 500":         {apiError(500, "InternalError"), retry.ClassUnavailable},
		"ServiceUnavailable 503":    {apiError(503, "ServiceUnavailable"), retry.ClassUnavailable},
		"502 without a code":        {apiError(502, ""), retry.ClassUnavailable},
		"AccessDenied 403":          {apiError(403, "AccessDenied"), retry.ClassPermission},
		"InvalidAccessKeyId 403":    {apiError(403, "InvalidAccessKeyId"), retry.ClassPermission},
		"SignatureDoesNotMatch 403": {apiError(403, "SignatureDoesNotMatch"), retry.ClassPermission},
		"403 without a code":        {apiError(403, ""), retry.ClassPermission},
		"NoSuchKey 404":             {apiError(404, "NoSuchKey"), retry.ClassInvalid},
		"MalformedPolicyDocument":   {apiError(400, "MalformedPolicyDocument"), retry.ClassInvalid},
		"RequestTimeout 400":        {apiError(400, "RequestTimeout"), retry.ClassNetwork},
		"EntityAlreadyExists 409":   {apiError(409, "EntityAlreadyExists"), retry.ClassConflict},
		"ErrInvalid":                {fmt.Errorf("x: %w", ErrInvalid), retry.ClassInvalid},
		"ErrConflict":               {fmt.Errorf("x: %w", ErrConflict), retry.ClassConflict},
		"connection refused": {&smithy.OperationError{ServiceID: "S3", OperationName: "Test",
			Err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}}, retry.ClassNetwork},
		"per-call timeout": {fmt.Errorf("op: %w", context.DeadlineExceeded), retry.ClassNetwork},
		"canceled":         {fmt.Errorf("op: %w", context.Canceled), retry.ClassCanceled},
		"anything else":    {errors.New("boom"), retry.ClassOther},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if got := Classify(tc.err); got != tc.want {
				t.Errorf("Classify(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
