// Package devstack runs the real local stack that `make dev`, the tests and
// the benchmarks share: a kube-apiserver with etcd and, when asked,
// kube-controller-manager; PostgreSQL with an Aurora-like admin; and
// versitygw for S3 and IAM. Every process it starts is stopped by Close, and
// dies with the process that started it.
package devstack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Options selects the parts of the stack to start.
type Options struct {
	// Dir is the stack's folder; a temporary one is made and removed when
	// empty.
	Dir string
	// Kube starts kube-apiserver and etcd, installing the CRDs in CRDPaths.
	Kube     bool
	CRDPaths []string
	// ControllerManager runs kube-controller-manager's namespace and
	// garbage-collector controllers against that apiserver, so that
	// deleted namespaces finish terminating and owner references are
	// collected, as in a cluster. It needs Kube.
	ControllerManager bool
	// Postgres starts PostgreSQL.
	Postgres        bool
	PostgresOptions PostgresOptions
	// Clusters starts more PostgreSQL servers, one for each entry, each
	// with its own folder, port and Aurora-like admin: the fleet's
	// clusters. An entry's Major picks its PostgreSQL major. They start
	// whether or not Postgres does.
	Clusters []PostgresOptions
	// S3 starts versitygw.
	S3        bool
	S3Options S3Options
}

// Stack is the running parts; the ones not asked for are nil.
type Stack struct {
	Dir               string
	Kube              *Kube
	ControllerManager *ControllerManager
	Postgres          *Postgres
	// Clusters are the servers of Options.Clusters, in its order.
	Clusters []*Postgres
	S3       *S3

	ownsDir bool
}

// Start starts the parts opts asks for. On error nothing is left running.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	s := &Stack{Dir: opts.Dir}
	if s.Dir == "" {
		if s.Dir, err = os.MkdirTemp("", "orgforge-stack-"); err != nil {
			return nil, err
		}
		s.ownsDir = true
	} else if s.Dir, err = filepath.Abs(s.Dir); err != nil {
		return nil, err
	}
	if opts.ControllerManager && !opts.Kube {
		return nil, errors.New("devstack: the controller-manager needs Kube")
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if opts.Postgres {
		if s.Postgres, err = StartPostgres(ctx, s.Dir, opts.PostgresOptions); err != nil {
			return nil, err
		}
	}
	for i, o := range opts.Clusters {
		// StartPostgres makes its folder, postgres, under the one given.
		pg, err := StartPostgres(ctx, filepath.Join(s.Dir, fmt.Sprintf("cluster-%d", i+1)), o)
		if err != nil {
			return nil, fmt.Errorf("cluster %d of %d: %w", i+1, len(opts.Clusters), err)
		}
		s.Clusters = append(s.Clusters, pg)
	}
	if opts.S3 {
		if s.S3, err = StartS3With(ctx, s.Dir, opts.S3Options); err != nil {
			return nil, err
		}
	}
	if opts.Kube {
		if s.Kube, err = StartKube(s.Dir, opts.CRDPaths); err != nil {
			return nil, err
		}
	}
	if opts.ControllerManager {
		if s.ControllerManager, err = StartControllerManager(ctx, s.Dir, s.Kube); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Close stops everything the stack started and removes a temporary folder.
func (s *Stack) Close() error {
	// In this order: the controller-manager goes before the apiserver it
	// talks to. A part not started has a nil receiver, never called.
	type part struct {
		name    string
		started bool
		stop    func() error
	}
	parts := []part{
		{"kube-controller-manager", s.ControllerManager != nil, s.ControllerManager.Close},
		{"kube", s.Kube != nil, s.Kube.Stop},
		{"s3", s.S3 != nil, s.S3.Close},
		{"postgres", s.Postgres != nil, s.Postgres.Close},
	}
	for i, pg := range s.Clusters {
		parts = append(parts, part{fmt.Sprintf("postgres cluster %d", i+1), true, pg.Close})
	}
	var errs []error
	for _, p := range parts {
		if !p.started {
			continue
		}
		if err := p.stop(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p.name, err))
		}
	}
	if s.ownsDir {
		_ = os.RemoveAll(s.Dir)
	}
	return errors.Join(errs...)
}

// OperatorFlags writes the admin's connection string and the S3 key pair
// into dir, readable by their owner only, as a deployment's mounted Secrets
// hold them, and returns the operator flags that point it at the stack's
// PostgreSQL, S3 and IAM through those files. Kubernetes, ports, logging
// and the rest are the caller's to add.
func (s *Stack) OperatorFlags(dir string) ([]string, error) {
	if s.Postgres == nil || s.S3 == nil {
		return nil, errors.New("devstack: the operator needs the stack's PostgreSQL and S3")
	}
	dsn := filepath.Join(dir, "admin-dsn")
	keyID := filepath.Join(dir, "s3-access-key-id")
	secretKey := filepath.Join(dir, "s3-secret-access-key")
	for path, v := range map[string]string{dsn: s.Postgres.AdminDSN(), keyID: s.S3.AccessKey, secretKey: s.S3.SecretKey} {
		if err := os.WriteFile(path, []byte(v), 0o600); err != nil {
			return nil, fmt.Errorf("devstack: writing the operator's secret files: %w", err)
		}
	}
	return []string{
		"--database-admin-dsn-file=" + dsn,
		"--s3-bucket=" + s.S3.Bucket,
		"--s3-endpoint=" + s.S3.Endpoint,
		"--iam-endpoint=" + s.S3.IAMEndpoint,
		"--s3-region=" + s.S3.Region,
		"--s3-path-style",
		"--s3-access-key-id-file=" + keyID,
		"--s3-secret-access-key-file=" + secretKey,
	}, nil
}
