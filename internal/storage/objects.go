package storage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/orgforge/orgforge/internal/retry"
)

// maxDeleteBatch is the most keys one DeleteObjects request may name.
const maxDeleteBatch = 1000

// Marker is what the marker object of a prefix records: the organization
// that claimed it, by name and by UID. The UID decides ownership, so that an
// organization deleted and created again under the same name does not
// inherit the old one's data unnoticed. Cluster is the owning operator's
// cluster identity; markers written before it was recorded have none, and
// are taken as this cluster's.
type Marker struct {
	Org     string `json:"org"`
	UID     string `json:"uid"`
	Cluster string `json:"cluster,omitempty"`
}

// sameCluster reports whether got was written by an operator of m's cluster
// identity, or before markers recorded one.
func (m Marker) sameCluster(got Marker) bool { return got.Cluster == "" || got.Cluster == m.Cluster }

// Holder describes, for a message, the organization of got as seen from
// m's: its name and UID, and its cluster identity when not m's.
func (m Marker) Holder(got Marker) string {
	if !m.sameCluster(got) {
		return fmt.Sprintf("organization %q (uid %s) of another Kubernetes cluster, whose orgforge cluster identity is %s", got.Org, got.UID, got.Cluster)
	}
	return fmt.Sprintf("organization %q (uid %s)", got.Org, got.UID)
}

func (s *Service) get(ctx context.Context, key string) ([]byte, error) {
	data, _, err := s.getTagged(ctx, key)
	return data, err
}

// getTagged is get that also returns the object's ETag, for a write that
// must replace exactly what was read.
func (s *Service) getTagged(ctx context.Context, key string) (data []byte, etag string, err error) {
	if key == "" {
		return nil, "", fmt.Errorf("%w: empty key", ErrInvalid)
	}
	err = s.do(ctx, "GetObject", func(ctx context.Context) error {
		out, err := s.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(key)})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		etag = aws.ToString(out.ETag)
		// Reading the body is part of the attempt: a connection that dies
		// halfway is retried like one that never answered.
		data, err = io.ReadAll(out.Body)
		return err
	})
	if isNoSuchKey(err) {
		return nil, "", fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	return data, etag, err
}

func isNoSuchKey(err error) bool {
	var nsk *s3types.NoSuchKey
	return errors.As(err, &nsk) || errorCode(err) == "NoSuchKey" ||
		(statusCode(err) == http.StatusNotFound && errorCode(err) != "NoSuchBucket")
}

// EnsurePrefix claims prefix for the organization m by writing its marker
// object, <prefix>.orgforge. It reports whether it wrote the marker; a prefix
// already claimed by the same UID is left as it is. A prefix claimed by
// another UID, or holding a marker orgforge cannot read, is ErrConflict and
// is not touched.
func (s *Service) EnsurePrefix(ctx context.Context, prefix string, m Marker) (created bool, err error) {
	if err := validatePrefix(prefix); err != nil {
		return false, err
	}
	if m.Org == "" || m.UID == "" {
		return false, fmt.Errorf("%w: the marker of prefix %q needs an organization and a UID", ErrInvalid, prefix)
	}
	key := prefix + MarkerName

	// A conditional write settles a race between two creators; the loser
	// reads the winner's marker like any existing one.
	for range 2 {
		current, etag, err := s.getTagged(ctx, key)
		switch {
		case err == nil:
			got, err := s.checkMarker(prefix, current, m)
			if err != nil || got.Cluster != "" || m.Cluster == "" {
				return false, err
			}
			// Written before markers recorded the cluster: recorded now.
			if err := s.putMarker(ctx, key, m, etag); err != nil {
				return false, err
			}
			return false, nil
		case !errors.Is(err, ErrNotFound):
			return false, fmt.Errorf("reading marker %s/%s: %w", s.cfg.Bucket, key, err)
		}
		err = s.putMarker(ctx, key, m, "")
		switch {
		case err == nil:
			s.log.Info("Claimed prefix", "prefix", prefix, "organization", m.Org, "uid", m.UID)
			return true, nil
		case errors.Is(err, errMarkerRaced):
			continue
		default:
			return false, err
		}
	}
	return false, fmt.Errorf("writing marker %s/%s: it keeps appearing and disappearing; another writer is racing orgforge", s.cfg.Bucket, key)
}

// errMarkerRaced is a conditional write of a marker that another writer
// beat.
var errMarkerRaced = errors.New("the marker changed while it was written")

// putMarker writes m as the marker object key: only when there is none if
// etag is empty, else only over the object of that ETag. A write that
// another writer beat is errMarkerRaced.
func (s *Service) putMarker(ctx context.Context, key string, m Marker, etag string) error {
	body, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding marker: %w", err)
	}
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.cfg.Bucket),
		Key:           aws.String(key),
		ContentLength: aws.Int64(int64(len(body))),
		ContentType:   aws.String("application/json"),
	}
	if etag == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		in.IfMatch = aws.String(etag)
	}
	err = s.do(ctx, "PutObject", func(ctx context.Context) error {
		// A fresh reader each attempt: a retry sends the whole body again.
		in.Body = bytes.NewReader(body)
		_, err := s.s3.PutObject(ctx, in)
		return err
	})
	switch {
	case err == nil:
		return nil
	case statusCode(err) == http.StatusPreconditionFailed, errorCode(err) == "ConditionalRequestConflict":
		return fmt.Errorf("writing marker %s/%s: %w", s.cfg.Bucket, key, errMarkerRaced)
	}
	return fmt.Errorf("writing marker %s/%s: %w", s.cfg.Bucket, key, err)
}

// RemarkPrefix marks prefix as the organization to's: the adoption of a
// prefix whose marker is exactly from. The write replaces only the marker
// object that was read, so one that changed meanwhile, or any other
// marker, is ErrConflict and is not touched.
func (s *Service) RemarkPrefix(ctx context.Context, prefix string, from, to Marker) error {
	if err := validatePrefix(prefix); err != nil {
		return err
	}
	if to.Org == "" || to.UID == "" {
		return fmt.Errorf("%w: the marker of prefix %q needs an organization and a UID", ErrInvalid, prefix)
	}
	key := prefix + MarkerName
	current, etag, err := s.getTagged(ctx, key)
	if err != nil {
		return fmt.Errorf("reading marker %s/%s: %w", s.cfg.Bucket, key, err)
	}
	var got Marker
	if err := json.Unmarshal(current, &got); err != nil || got != from || etag == "" {
		return fmt.Errorf("%w: the marker of prefix %q is no longer the one of organization %q (uid %s)", ErrConflict, prefix, from.Org, from.UID)
	}
	if err := s.putMarker(ctx, key, to, etag); err != nil {
		if errors.Is(err, errMarkerRaced) {
			err = fmt.Errorf("%w: %w", ErrConflict, err)
		}
		return err
	}
	s.log.Info("Re-marked prefix", "prefix", prefix, "organization", to.Org, "fromUID", from.UID, "uid", to.UID)
	return nil
}

// PrefixOwner reads the marker of prefix: the organization that claimed it,
// and whether there is a marker at all. A marker orgforge cannot read is
// found with an empty Marker, an owner that matches no organization, so that
// a caller deciding whether to delete the prefix leaves it alone.
func (s *Service) PrefixOwner(ctx context.Context, prefix string) (m Marker, found bool, err error) {
	if err := validatePrefix(prefix); err != nil {
		return Marker{}, false, err
	}
	key := prefix + MarkerName
	current, err := s.get(ctx, key)
	switch {
	case errors.Is(err, ErrNotFound):
		return Marker{}, false, nil
	case err != nil:
		return Marker{}, false, fmt.Errorf("reading marker %s/%s: %w", s.cfg.Bucket, key, err)
	}
	if err := json.Unmarshal(current, &m); err != nil || m.UID == "" {
		return Marker{}, true, nil
	}
	return m, true, nil
}

// checkMarker returns the marker current if it is m's, and ErrConflict
// otherwise.
func (s *Service) checkMarker(prefix string, current []byte, m Marker) (Marker, error) {
	var got Marker
	if err := json.Unmarshal(current, &got); err != nil || got.UID == "" {
		return got, fmt.Errorf("%w: prefix %q holds a %s that orgforge did not write; move it away or give the organization another prefix",
			ErrConflict, prefix, MarkerName)
	}
	if got.UID != m.UID {
		return got, fmt.Errorf("%w: prefix %q belongs to %s; delete that organization's data first or give this one another prefix",
			ErrConflict, prefix, m.Holder(got))
	}
	return got, nil
}

// DeletePrefix removes every object under prefix, the marker included, and
// reports how many it removed. The prefix must be a valid, "/"-terminated
// one: an empty prefix would empty the whole bucket.
func (s *Service) DeletePrefix(ctx context.Context, prefix string) (deleted int, err error) {
	if err := validatePrefix(prefix); err != nil {
		return 0, fmt.Errorf("deleting prefix: %w", err)
	}
	s.rest.forget(markerCheck(prefix))
	err = s.eachPage(ctx, prefix, func(objects []s3types.Object) error {
		keys := make([]string, 0, len(objects))
		for _, obj := range objects {
			keys = append(keys, aws.ToString(obj.Key))
		}
		for start := 0; start < len(keys); start += maxDeleteBatch {
			n, err := s.deleteBatch(ctx, keys[start:min(start+maxDeleteBatch, len(keys))])
			deleted += n
			if err != nil {
				return fmt.Errorf("deleting objects under %s/%s: %w", s.cfg.Bucket, prefix, err)
			}
		}
		return nil
	})
	if err != nil {
		return deleted, err
	}
	if deleted > 0 {
		s.log.Info("Deleted prefix", "prefix", prefix, "objects", deleted)
	}
	return deleted, nil
}

// deleteBatch removes up to maxDeleteBatch keys in one request; keys already
// gone count as removed by someone else.
func (s *Service) deleteBatch(ctx context.Context, keys []string) (int, error) {
	ids := make([]s3types.ObjectIdentifier, len(keys))
	for i, k := range keys {
		ids[i] = s3types.ObjectIdentifier{Key: aws.String(k)}
	}
	var out *s3.DeleteObjectsOutput
	err := s.do(ctx, "DeleteObjects", func(ctx context.Context) error {
		var err error
		out, err = s.s3.DeleteObjects(ctx, &s3.DeleteObjectsInput{
			Bucket: aws.String(s.cfg.Bucket),
			Delete: &s3types.Delete{Objects: ids, Quiet: aws.Bool(true)},
		})
		return err
	})
	if err != nil {
		return 0, err
	}
	failed := 0
	var first s3types.Error
	for _, e := range out.Errors {
		if aws.ToString(e.Code) == "NoSuchKey" {
			continue
		}
		if failed == 0 {
			first = e
		}
		failed++
	}
	if failed > 0 {
		return len(keys) - failed, fmt.Errorf("%d of %d objects not deleted, the first %q: %s: %s",
			failed, len(keys), aws.ToString(first.Key), aws.ToString(first.Code), aws.ToString(first.Message))
	}
	return len(keys), nil
}

// PrefixUsage counts the objects under prefix and their bytes, the
// organization's usage: its marker object, the operator's, is left out. It
// lists the prefix, one request per thousand objects, each retried and
// bounded like every call of the service.
func (s *Service) PrefixUsage(ctx context.Context, prefix string) (objects, bytes int64, err error) {
	if err := validatePrefix(prefix); err != nil {
		return 0, 0, fmt.Errorf("measuring prefix: %w", err)
	}
	marker := prefix + MarkerName
	err = s.eachPage(ctx, prefix, func(page []s3types.Object) error {
		for _, obj := range page {
			if aws.ToString(obj.Key) == marker {
				continue
			}
			objects++
			bytes += aws.ToInt64(obj.Size)
		}
		return nil
	})
	if err != nil {
		return 0, 0, err
	}
	return objects, bytes, nil
}

// eachPage lists the objects under prefix with the SDK's paginator and
// hands each page to fn, stopping at the first error.
func (s *Service) eachPage(ctx context.Context, prefix string, fn func([]s3types.Object) error) error {
	pages := s3.NewListObjectsV2Paginator(s.s3, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.cfg.Bucket),
		Prefix: aws.String(prefix),
	})
	var fnErr error
	err := paginate(ctx, s, "ListObjectsV2", pages, func(page *s3.ListObjectsV2Output) bool {
		fnErr = fn(page.Contents)
		return fnErr == nil
	})
	if err != nil {
		return fmt.Errorf("listing %s/%s: %w", s.cfg.Bucket, prefix, err)
	}
	return fnErr
}

// pager is an SDK paginator of pages of type O, whose requests take options
// of type Opt.
type pager[O, Opt any] interface {
	HasMorePages() bool
	NextPage(context.Context, ...func(*Opt)) (*O, error)
}

// paginate requests each page of pages through do and hands it to fn, until
// there is no page more, a request fails, or fn returns false.
func paginate[O, Opt any](ctx context.Context, s *Service, operation string, pages pager[O, Opt], fn func(*O) bool) error {
	for pages.HasMorePages() {
		var page *O
		err := s.do(ctx, operation, retry.Into(&page, func(ctx context.Context) (*O, error) {
			return pages.NextPage(ctx)
		}))
		if err != nil {
			return err
		}
		if !fn(page) {
			return nil
		}
	}
	return nil
}

// AccessKeyWorks reports whether the key id/secret still authenticates and
// may list prefix: the check that an organization's stored key is usable. A
// key that is unknown, wrong or not allowed is false, not an error; an error
// means the answer is unknown.
func (s *Service) AccessKeyWorks(ctx context.Context, id, secret, prefix string) (bool, error) {
	if err := validatePrefix(prefix); err != nil {
		return false, err
	}
	if id == "" || secret == "" {
		return false, fmt.Errorf("%w: empty access key id or secret", ErrInvalid)
	}
	// A client of its own: the SDK's signer caches signing keys by access
	// key id alone, so a shared one would sign a wrong secret with the key
	// derived from the right one and call the key working.
	cfg := s.awsCfg.Copy()
	cfg.Credentials = credentials.NewStaticCredentialsProvider(id, secret, "")
	client := s3.NewFromConfig(cfg, s.s3Options)
	err := s.do(ctx, "ListObjectsV2", func(ctx context.Context) error {
		_, err := client.ListObjectsV2(ctx, &s3.ListObjectsV2Input{
			Bucket:  aws.String(s.cfg.Bucket),
			Prefix:  aws.String(prefix),
			MaxKeys: aws.Int32(1),
		})
		return err
	})
	switch {
	case err == nil:
		return true, nil
	case errorCode(err) == "InvalidAccessKeyId", errorCode(err) == "SignatureDoesNotMatch",
		errorCode(err) == "AccessDenied", statusCode(err) == http.StatusForbidden:
		return false, nil
	}
	return false, fmt.Errorf("listing %s/%s with the organization's key: %w", s.cfg.Bucket, prefix, err)
}
