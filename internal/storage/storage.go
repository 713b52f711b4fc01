// Package storage is the S3 + IAM service of the registry: the tenants
// bucket, one prefix per organization, an optional IAM user per organization
// whose key is confined to that prefix, and the purge of both.
package storage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/go-logr/logr"

	"github.com/orgforge/orgforge/internal/retry"
)

// Defaults of Config.
const (
	DefaultIAMPath        = "/orgforge/"
	DefaultRequestTimeout = 15 * time.Second
	// DefaultKeyPropagation is how long a new access key is trusted without
	// S3's word. AWS documents IAM as eventually consistent: a change such
	// as a new access key or a user policy "takes time to become visible
	// from all possible endpoints", and AWS gives no bound, only the advice
	// to keep IAM changes off critical paths and to verify them before
	// depending on them. New keys are commonly refused by S3 for several
	// seconds after CreateAccessKey returns, occasionally longer. Two
	// minutes is what the Terraform AWS provider allows IAM changes to
	// propagate, a bound tested against AWS at scale for years; waiting
	// longer only delays the repair of a Secret whose key id IAM lists but
	// whose secret was edited by hand (see Service.AccessKeyUsable).
	DefaultKeyPropagation = 2 * time.Minute
	// DefaultUserListMaxAge bounds how stale the listing of users may be
	// that stands for a GetUser of each organization at rest.
	DefaultUserListMaxAge = 30 * time.Second
)

// validateBudget bounds New's checks as a whole, so that an endpoint that
// never answers is reported well within the fifteen seconds a start-up may
// take, whatever RequestTimeout and the retry policy add up to.
const validateBudget = 12 * time.Second

// Sentinel errors, for callers to branch on with errors.Is.
var (
	// ErrInvalid is an argument the service refuses before calling anything:
	// a malformed prefix, bucket, organization or user name.
	ErrInvalid = errors.New("invalid argument")
	// ErrConflict is a prefix or IAM user that exists but belongs to another
	// organization, or is not orgforge's at all. Nothing was changed.
	ErrConflict = errors.New("owned by someone else")
	// ErrNotFound is an object or user that does not exist.
	ErrNotFound = errors.New("not found")
)

// Config is what the service needs to reach the tenants bucket and IAM.
type Config struct {
	// Bucket is the shared tenants bucket; it must exist.
	Bucket string
	// Region signs requests; empty takes it from the environment.
	Region string
	// Endpoint and IAMEndpoint are base URLs for S3-compatible servers;
	// empty uses AWS's own endpoints.
	Endpoint    string
	IAMEndpoint string
	// UsePathStyle addresses the bucket in the path rather than the host,
	// which most S3-compatible servers need.
	UsePathStyle bool
	// AccessKeyID and SecretAccessKey are the admin credentials; empty uses
	// the AWS default credential chain (environment, IRSA, instance role).
	// The secret is never logged nor put in an error.
	AccessKeyID     string
	SecretAccessKey string
	// IAMPath is the path every IAM user the service creates lives under;
	// DefaultIAMPath when empty.
	IAMPath string
	// PermissionsBoundary is the ARN of the managed policy set as the
	// permissions boundary of every user the service creates, and of every
	// user of ours that lacks it; empty sets none and leaves users' own
	// boundaries alone.
	PermissionsBoundary string
	// RequestTimeout bounds each call; DefaultRequestTimeout when zero.
	RequestTimeout time.Duration
	// Retry is the policy around transient errors; retry.DefaultPolicy when
	// zero.
	Retry retry.Policy
	// KeyPropagation is how long after its creation an access key that IAM
	// lists is trusted although S3 refuses it, as S3 may not know it yet
	// (see Service.AccessKeyUsable); DefaultKeyPropagation when zero.
	KeyPropagation time.Duration
	// CheckPeriod is how often the checks that IAM and S3 cannot answer
	// in bulk run for an organization at rest: its prefix's marker, its
	// user's inline policy, permissions boundary and access keys, and
	// whether its key works (see EnsureAccess). Each organization falls
	// due at its own phase of the period, so that a pass checks a share
	// of them. Zero checks everything at every call, as before.
	CheckPeriod time.Duration
	// Resync is how often the caller checks an organization at rest: an
	// organization not seen since the process started is checked in
	// full if it fell due within the last Resync.
	Resync time.Duration
	// UserListMaxAge is how long one listing of the users under IAMPath
	// answers whether an organization at rest still has its user;
	// DefaultUserListMaxAge when zero.
	UserListMaxAge time.Duration
}

// Service is the storage service. It is safe for concurrent use.
type Service struct {
	cfg Config
	log logr.Logger
	// awsCfg builds clients that sign with an organization's key.
	awsCfg    aws.Config
	s3        *s3.Client
	iam       *iam.Client
	transport *http.Transport
	closeOnce sync.Once
	requests  requestCounter
	// users is the listing of the users under the IAM path that the
	// checks of organizations at rest share; rest is when those checks
	// fall due (see EnsureAccess and EnsurePrefixAtRest).
	users userList
	rest  cadence
	// clock stands for time.Now in the checks at rest, for tests; nil
	// is time.Now.
	clock func() time.Time
}

// New builds the S3 and IAM clients and checks that the bucket exists and
// that IAM answers, so that a misconfiguration stops the operator at start-up
// with an error naming the service, the endpoint and the cause.
func New(ctx context.Context, cfg Config, log logr.Logger) (*Service, error) {
	return newService(ctx, cfg, log, nil)
}

// newService is New with a hook around the HTTP transport, which tests use to
// see which requests the service makes.
func newService(ctx context.Context, cfg Config, log logr.Logger, wrap func(http.RoundTripper) http.RoundTripper) (*Service, error) {
	cfg, err := withDefaults(cfg)
	if err != nil {
		return nil, fmt.Errorf("storage: %w", err)
	}
	awsCfg, transport, err := loadAWSConfig(ctx, cfg, wrap)
	if err != nil {
		return nil, err
	}
	cfg.Region = awsCfg.Region

	s := &Service{cfg: cfg, log: log, transport: transport}
	// On the configuration, so that the clients signed with an
	// organization's key (AccessKeyWorks) are counted too.
	awsCfg.APIOptions = append(awsCfg.APIOptions, s.requests.add)
	s.awsCfg = awsCfg
	s.rest = cadence{period: cfg.CheckPeriod, resync: cfg.Resync, since: time.Now(), checked: map[string]checkRecord{}}
	s.s3 = s3.NewFromConfig(awsCfg, s.s3Options)
	s.iam = iam.NewFromConfig(awsCfg, func(o *iam.Options) {
		if cfg.IAMEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.IAMEndpoint)
		}
	})

	vctx, cancel := context.WithTimeout(ctx, validateBudget)
	defer cancel()
	if err := s.check(vctx); err != nil {
		s.Close()
		return nil, err
	}
	s.logConnected()
	return s, nil
}

// loadAWSConfig builds the SDK's configuration for cfg. Its HTTP client
// sends through the returned transport, which Close releases, wrapped by
// wrap when that is set.
func loadAWSConfig(ctx context.Context, cfg Config, wrap func(http.RoundTripper) http.RoundTripper) (aws.Config, *http.Transport, error) {
	// The SDK adds AWS_CA_BUNDLE's roots to a BuildableClient only; its
	// transport is then taken out so that Close can release connections.
	buildable := awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) { d.Timeout = 5 * time.Second }).
		WithTransportOptions(func(t *http.Transport) {
			t.TLSHandshakeTimeout = 5 * time.Second
			t.MaxIdleConnsPerHost = 32
		})
	awsCfg, err := config.LoadDefaultConfig(ctx, sdkOptions(cfg, buildable)...)
	if err != nil {
		return aws.Config{}, nil, fmt.Errorf("storage: loading AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		return aws.Config{}, nil, fmt.Errorf("storage: %w: no region configured or found in the environment", ErrInvalid)
	}
	if b, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		buildable = b
	}
	transport := buildable.GetTransport()
	var rt http.RoundTripper = transport
	if wrap != nil {
		rt = wrap(rt)
	}
	awsCfg.HTTPClient = &http.Client{
		Transport: rt,
		// The SDK reads redirects itself, as errors naming the right region.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return awsCfg, transport, nil
}

// sdkOptions are the SDK's load options for cfg, sending with client.
func sdkOptions(cfg Config, client *awshttp.BuildableClient) []func(*config.LoadOptions) error {
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(client),
		// retry.Do retries transient errors with the operator's policy and
		// logs each retry; a second layer inside the SDK would multiply the
		// attempts and hide them.
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		// Checksums only where S3 requires them: many S3-compatible servers
		// reject the SDK's default trailing checksums.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	return opts
}

// logConnected reports the service's configuration once it has answered.
func (s *Service) logConnected() {
	cfg := s.cfg
	s.log.Info("Connected to storage", "bucket", cfg.Bucket, "endpoint", s.Endpoint(),
		"iamEndpoint", s.iamEndpoint(), "region", cfg.Region, "iamPath", cfg.IAMPath,
		"permissionsBoundary", cfg.PermissionsBoundary)
	if cfg.PermissionsBoundary == "" && cfg.IAMEndpoint == "" {
		// Allowed, for IAM policies written before boundaries; the policy
		// of docs/install-aws.md denies creating users without one.
		s.log.Info("No IAM permissions boundary configured: the users orgforge creates are confined by their inline policy alone; see --iam-permissions-boundary")
	}
}

func (s *Service) s3Options(o *s3.Options) {
	if s.cfg.Endpoint != "" {
		o.BaseEndpoint = aws.String(s.cfg.Endpoint)
	}
	o.UsePathStyle = s.cfg.UsePathStyle
}

func withDefaults(cfg Config) (Config, error) {
	if err := validateBucket(cfg.Bucket); err != nil {
		return cfg, err
	}
	for name, endpoint := range map[string]string{"endpoint": cfg.Endpoint, "IAM endpoint": cfg.IAMEndpoint} {
		if endpoint == "" {
			continue
		}
		u, err := url.Parse(endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			return cfg, fmt.Errorf("%w: %s %q is not an http(s) URL without credentials", ErrInvalid, name, redactURL(endpoint))
		}
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return cfg, fmt.Errorf("%w: set both the access key id and the secret access key, or neither to use the default credential chain", ErrInvalid)
	}
	if cfg.IAMPath == "" {
		cfg.IAMPath = DefaultIAMPath
	}
	if !iamPathRE.MatchString(cfg.IAMPath) {
		return cfg, fmt.Errorf("%w: IAM path %q must start and end with \"/\" and hold only letters, digits and /.-_", ErrInvalid, cfg.IAMPath)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.Retry.Attempts == 0 {
		cfg.Retry = retry.DefaultPolicy
	}
	if cfg.KeyPropagation <= 0 {
		cfg.KeyPropagation = DefaultKeyPropagation
	}
	if cfg.UserListMaxAge <= 0 {
		cfg.UserListMaxAge = DefaultUserListMaxAge
	}
	return cfg, nil
}

// redactURL keeps a URL's scheme and host, so that a mistyped endpoint with
// credentials in it can be reported without them.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "<unparsable>"
	}
	u.User = nil
	return u.String()
}

func (s *Service) checkBucket(ctx context.Context) error {
	err := s.do(ctx, "HeadBucket", func(ctx context.Context) error {
		_, err := s.s3.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.cfg.Bucket)})
		return err
	})
	if err == nil {
		return nil
	}
	problem := fmt.Sprintf("checking bucket %q", s.cfg.Bucket)
	switch {
	case statusCode(err) == http.StatusNotFound:
		problem = fmt.Sprintf("bucket %q does not exist; create it or configure another bucket", s.cfg.Bucket)
	case Classify(err) == retry.ClassPermission:
		problem = fmt.Sprintf("no access to bucket %q with the configured credentials", s.cfg.Bucket)
	}
	return fmt.Errorf("storage: s3 at %s: %s: %w", s.Endpoint(), problem, err)
}

func (s *Service) checkIAM(ctx context.Context) error {
	err := s.do(ctx, "ListUsers", func(ctx context.Context) error {
		_, err := s.iam.ListUsers(ctx, &iam.ListUsersInput{PathPrefix: aws.String(s.cfg.IAMPath), MaxItems: aws.Int32(1)})
		return err
	})
	if err == nil {
		return nil
	}
	problem := "listing users under " + s.cfg.IAMPath
	if Classify(err) == retry.ClassPermission {
		problem = "the configured credentials may not list users under " + s.cfg.IAMPath
	}
	return fmt.Errorf("storage: iam at %s: %s: %w", s.iamEndpoint(), problem, err)
}

// do runs one external call through retry.Do, each attempt bounded by the
// request timeout.
func (s *Service) do(ctx context.Context, operation string, fn func(context.Context) error) error {
	return retry.Do(ctx, s.log, s.cfg.Retry, Classify, operation, retry.Within(s.cfg.RequestTimeout, fn))
}

// call is do for a call with a result: that of the attempt that succeeded.
func call[T any](ctx context.Context, s *Service, operation string, fn func(context.Context) (T, error)) (T, error) {
	var out T
	err := s.do(ctx, operation, retry.Into(&out, fn))
	return out, err
}

// Name is the service's name in the registry, health checks and errors.
func (s *Service) Name() string { return "storage" }

// HealthCheck reports whether the bucket and IAM both answer.
func (s *Service) HealthCheck(ctx context.Context) error {
	return s.check(ctx)
}

// check asks S3 and IAM at once, so that one slow answer does not delay the
// other's, and reports both failures.
func (s *Service) check(ctx context.Context) error {
	var s3Err, iamErr error
	var wg sync.WaitGroup
	wg.Go(func() { s3Err = s.checkBucket(ctx) })
	wg.Go(func() { iamErr = s.checkIAM(ctx) })
	wg.Wait()
	return errors.Join(s3Err, iamErr)
}

// Close releases idle connections. The service must not be used afterwards.
func (s *Service) Close() {
	s.closeOnce.Do(s.transport.CloseIdleConnections)
}

// Bucket is the tenants bucket.
func (s *Service) Bucket() string { return s.cfg.Bucket }

// Region is the region requests are signed for.
func (s *Service) Region() string { return s.cfg.Region }

// Endpoint is the S3 endpoint, AWS's regional one when none is configured.
func (s *Service) Endpoint() string {
	if s.cfg.Endpoint != "" {
		return redactURL(s.cfg.Endpoint)
	}
	return "https://s3." + s.cfg.Region + ".amazonaws.com"
}

func (s *Service) iamEndpoint() string {
	if s.cfg.IAMEndpoint != "" {
		return redactURL(s.cfg.IAMEndpoint)
	}
	return "https://iam.amazonaws.com"
}
