package devstack

import (
	"context"
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
)

func TestAccessKeyOfReadsEverySigningForm(t *testing.T) {
	cases := map[string]struct {
		header string
		query  string
		want   string
	}{
		"sigv4 header": {
			header: "AWS4-HMAC-SHA256 Credential=AKIANEW/20261130/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
			want:   "AKIANEW",
		},
		"sigv4 presigned": {
			query: "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAURL%2F20261130%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=abc",
			want:  "AKIAURL",
		},
		"sigv2 header":    {header: "AWS AKIAOLD:c2lnbmF0dXJl", want: "AKIAOLD"},
		"sigv2 presigned": {query: "AWSAccessKeyId=AKIAOLDURL&Signature=abc&Expires=1", want: "AKIAOLDURL"},
		"anonymous":       {want: ""},
		"no credential":   {header: "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=abc", want: ""},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			r := &http.Request{Header: http.Header{}, URL: &url.URL{Path: "/b/k", RawQuery: tc.query}}
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			if got := accessKeyOf(r); got != tc.want {
				t.Errorf("accessKeyOf = %q, want %q", got, tc.want)
			}
		})
	}
}

func s3ErrorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func TestIAMDelayRefusesANewKeyUntilTheDelayHasPassedAndNeverTheRootKey(t *testing.T) {
	const delay = 4 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, err := StartS3With(ctx, t.TempDir(), S3Options{IAMDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = st.Close() }()

	admin := iam.New(iam.Options{
		Region: st.Region, BaseEndpoint: aws.String(st.IAMEndpoint),
		Credentials: credentials.NewStaticCredentialsProvider(st.AccessKey, st.SecretKey, ""),
	})
	if _, err := admin.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String("late")}); err != nil {
		t.Fatalf("CreateUser: %v", err)
	}
	policy := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":["arn:aws:s3:::` +
		st.Bucket + `","arn:aws:s3:::` + st.Bucket + `/*"]}]}`
	if _, err := admin.PutUserPolicy(ctx, &iam.PutUserPolicyInput{
		UserName: aws.String("late"), PolicyName: aws.String("all"), PolicyDocument: aws.String(policy),
	}); err != nil {
		t.Fatalf("PutUserPolicy: %v", err)
	}
	out, err := admin.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String("late")})
	if err != nil {
		t.Fatalf("CreateAccessKey: %v", err)
	}
	id, secret := aws.ToString(out.AccessKey.AccessKeyId), aws.ToString(out.AccessKey.SecretAccessKey)
	created := aws.ToTime(out.AccessKey.CreateDate)
	if created.IsZero() {
		t.Fatal("versitygw's CreateAccessKey reports no CreateDate; the delay mode needs it")
	}
	listed, err := admin.ListAccessKeys(ctx, &iam.ListAccessKeysInput{UserName: aws.String("late")})
	if err != nil || len(listed.AccessKeyMetadata) != 1 || !aws.ToTime(listed.AccessKeyMetadata[0].CreateDate).Equal(created) {
		t.Fatalf("ListAccessKeys = %+v, %v; want the one key with CreateDate %s", listed, err, created)
	}

	young := st.Client(id, secret)
	list := func(c *s3.Client) error {
		_, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(st.Bucket)})
		return err
	}
	err = list(young)
	var respErr interface{ HTTPStatusCode() int }
	if s3ErrorCode(err) != "InvalidAccessKeyId" || !errors.As(err, &respErr) || respErr.HTTPStatusCode() != http.StatusForbidden {
		t.Fatalf("a request signed with the new key: err = %v; want InvalidAccessKeyId, 403", err)
	}

	presigned, err := s3.NewPresignClient(young).PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(st.Bucket), Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(presigned.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	var s3err struct {
		Code           string
		AWSAccessKeyId string
	}
	if err := xml.Unmarshal(body, &s3err); err != nil {
		t.Fatalf("the refusal is not S3's XML error: %v\n%s", err, body)
	}
	type refusal struct {
		Status    int
		Code, Key string
	}
	want := refusal{http.StatusForbidden, "InvalidAccessKeyId", id}
	if diff := cmp.Diff(want, refusal{resp.StatusCode, s3err.Code, s3err.AWSAccessKeyId}); diff != "" {
		t.Errorf("presigned GET with the new key (-want +got):\n%s", diff)
	}

	if err := list(st.RootClient()); err != nil {
		t.Errorf("the root key is refused: %v", err)
	}

	deadline := time.Now().Add(delay + 20*time.Second)
	for {
		err := list(young)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the new key still fails after the delay: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if early := created.Add(delay).Sub(time.Now()); early > 0 {
		t.Errorf("the new key worked %s before its delay had passed", early)
	}

	// Stopped, the endpoints refuse connections as without the proxy; started
	// again, they serve.
	if err := st.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, endpoint := range []string{st.Endpoint, st.IAMEndpoint} {
		if c, err := net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "http://"), time.Second); err == nil {
			_ = c.Close()
			t.Errorf("%s accepts connections while the stack is stopped", endpoint)
		}
	}
	if err := st.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := list(young); err != nil {
		t.Errorf("the propagated key fails after a restart: %v", err)
	}
}
