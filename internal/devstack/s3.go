package devstack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	orgcreds "github.com/orgforge/orgforge/internal/credentials"
)

// TenantsBucket is the bucket the stack creates for organizations' prefixes.
const TenantsBucket = "orgforge-tenants"

// S3 is versitygw serving S3 on a posix folder, with its standalone IAM
// service, which enforces IAM identity policies including s3:prefix
// conditions.
type S3 struct {
	// Endpoint is the S3 endpoint, http://127.0.0.1:port.
	Endpoint string
	// IAMEndpoint is the IAM API endpoint.
	IAMEndpoint string
	Region      string
	// AccessKey and SecretKey are the root account's; the operator uses them
	// as its admin credentials.
	AccessKey string
	SecretKey string
	Bucket    string
	// IAMDelay is the delay mode's delay (see S3Options); zero when it is
	// off.
	IAMDelay time.Duration

	dir     string
	sockDir string
	bin     string
	// s3Port and iamPort are versitygw's; Endpoint and IAMEndpoint are the
	// proxy's when the delay mode is on.
	s3Port  int
	iamPort int
	iam     *process
	gw      *process
	proxy   *delayProxy
}

// S3Options tunes the S3 and IAM servers.
type S3Options struct {
	// IAMDelay, when positive, turns on the IAM delay mode: Endpoint and
	// IAMEndpoint lead to a proxy in front of versitygw that refuses S3
	// requests signed with an access key younger than IAMDelay with
	// InvalidAccessKeyId (403), as S3 on AWS does while a new key
	// propagates through IAM. A key's age counts from the CreateDate IAM
	// reported for it. The root key is never refused.
	IAMDelay time.Duration
}

// StartS3 starts the IAM service and the gateway under dir and creates the
// tenants bucket.
func StartS3(ctx context.Context, dir string) (*S3, error) {
	return StartS3With(ctx, dir, S3Options{})
}

// StartS3With is StartS3 with options.
func StartS3With(ctx context.Context, dir string, opts S3Options) (*S3, error) {
	bin, err := toolPath("versitygw", EnvVersitygw)
	if err != nil {
		return nil, err
	}
	s := &S3{Region: "us-east-1", Bucket: TenantsBucket, dir: filepath.Join(dir, "s3"), bin: bin}
	if err := s.makeFolders(); err != nil {
		return nil, err
	}
	if err := s.makeRootKey(); err != nil {
		return nil, err
	}
	if s.s3Port, err = freePort(); err != nil {
		return nil, err
	}
	if s.iamPort, err = freePort(); err != nil {
		return nil, err
	}
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", s.s3Port)
	s.IAMEndpoint = fmt.Sprintf("http://127.0.0.1:%d", s.iamPort)
	if opts.IAMDelay > 0 {
		if err := s.useDelayProxy(opts.IAMDelay); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	if err := s.Start(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := s.createBucket(ctx); err != nil {
		_ = s.Close()
		return nil, err
	}
	return s, nil
}

// makeFolders makes the IAM service's and the gateway's folders, and the
// socket folder.
func (s *S3) makeFolders() error {
	for _, d := range []string{filepath.Join(s.dir, "iam"), filepath.Join(s.dir, "root")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// A unix socket path must stay under 108 bytes, so it gets its own short
	// temporary folder.
	var err error
	s.sockDir, err = os.MkdirTemp("", "orgforge-iam-")
	return err
}

// makeRootKey draws the root account's key pair.
func (s *S3) makeRootKey() error {
	id, err := orgcreds.NewPassword()
	if err != nil {
		return err
	}
	s.AccessKey = "ROOT" + id[:16]
	s.SecretKey, err = orgcreds.NewPassword()
	return err
}

// useDelayProxy puts the IAM delay proxy, on ports of its own, in front of
// the gateway, and binds those ports at once.
func (s *S3) useDelayProxy(delay time.Duration) error {
	proxyS3, err := freePort()
	if err != nil {
		return err
	}
	proxyIAM, err := freePort()
	if err != nil {
		return err
	}
	s.IAMDelay = delay
	s.proxy = newDelayProxy(delay,
		fmt.Sprintf("127.0.0.1:%d", proxyS3), fmt.Sprintf("127.0.0.1:%d", s.s3Port),
		fmt.Sprintf("127.0.0.1:%d", proxyIAM), fmt.Sprintf("127.0.0.1:%d", s.iamPort))
	s.Endpoint = fmt.Sprintf("http://127.0.0.1:%d", proxyS3)
	s.IAMEndpoint = fmt.Sprintf("http://127.0.0.1:%d", proxyIAM)
	return s.proxy.listen()
}

func (s *S3) env() []string {
	return []string{"ROOT_ACCESS_KEY=" + s.AccessKey, "ROOT_SECRET_KEY=" + s.SecretKey}
}

// Start starts both servers, or restarts them after Stop.
func (s *S3) Start(ctx context.Context) error {
	sock := filepath.Join(s.sockDir, "iam.sock")
	_ = os.Remove(sock)
	iam, err := startProcess("versitygw-iam", filepath.Join(s.dir, "iam.log"), nil, s.env(), s.bin,
		"--port", fmt.Sprintf("127.0.0.1:%d", s.iamPort),
		"iam", "--dir", filepath.Join(s.dir, "iam"), "--private-ports", sock)
	if err != nil {
		return err
	}
	s.iam = iam
	if err := waitTCP(iam, fmt.Sprintf("127.0.0.1:%d", s.iamPort), 30*time.Second); err != nil {
		iam.kill()
		return err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if time.Now().After(deadline) {
			iam.kill()
			return iam.failure(fmt.Errorf("no private socket at %s", sock))
		}
		time.Sleep(20 * time.Millisecond)
	}
	gw, err := startProcess("versitygw", filepath.Join(s.dir, "gateway.log"), nil, s.env(), s.bin,
		"--port", fmt.Sprintf("127.0.0.1:%d", s.s3Port),
		"--iam-standalone-endpoint", sock, "--iam-cache-disable",
		"posix", filepath.Join(s.dir, "root"))
	if err != nil {
		iam.kill()
		return err
	}
	s.gw = gw
	if err := waitTCP(gw, fmt.Sprintf("127.0.0.1:%d", s.s3Port), 30*time.Second); err != nil {
		gw.kill()
		iam.kill()
		return err
	}
	if s.proxy != nil {
		// The proxy listens only while the gateway does, so that a stopped
		// stack refuses connections with the delay mode on as without it.
		if err := s.proxy.start(); err != nil {
			gw.kill()
			iam.kill()
			return err
		}
	}
	return ctx.Err()
}

// RootClient returns an S3 client with the root credentials.
func (s *S3) RootClient() *s3.Client {
	return s.Client(s.AccessKey, s.SecretKey)
}

// Client returns an S3 client for the given key, path-style, against the
// stack's endpoint.
func (s *S3) Client(accessKey, secretKey string) *s3.Client {
	return s3.New(s3.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	})
}

func (s *S3) createBucket(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if _, err := s.RootClient().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		return fmt.Errorf("versitygw: creating bucket %s: %w\n--- gateway log ---\n%s", s.Bucket, err, tail(s.gw.logPath, 20))
	}
	return nil
}

// Stop stops both servers and keeps their data for Start. The delay mode
// remembers the keys it has seen.
func (s *S3) Stop() error {
	if s.proxy != nil {
		s.proxy.stop()
	}
	_ = s.gw.stop(syscall.SIGTERM, 10*time.Second)
	return s.iam.stop(syscall.SIGTERM, 10*time.Second)
}

// Close stops both servers and removes the socket folder.
func (s *S3) Close() error {
	err := s.Stop()
	_ = os.RemoveAll(s.sockDir)
	return err
}
