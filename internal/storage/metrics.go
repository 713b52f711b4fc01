package storage

import (
	"context"
	"sync/atomic"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	"github.com/prometheus/client_golang/prometheus"
)

// awsRequests counts the requests the storage services of the process send,
// each attempt once: the AWS cost of the operator, which AWS bills and
// throttles per account.
var awsRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
	Name: "orgforge_aws_requests_total",
	Help: "Requests sent to S3 and IAM, by service and operation; each attempt counts, those signed with an organization's key included.",
}, []string{"service", "operation"})

// Collectors are the storage service's metrics, for the operator's
// registry.
func Collectors() []prometheus.Collector { return []prometheus.Collector{awsRequests} }

// requestCounter counts one service's requests, for Service.Requests, and
// the process's, for awsRequests.
type requestCounter struct{ n atomic.Int64 }

// add is an SDK API option that puts the counter on a client's stack. It
// sits at the end of the finalize step, after signing, where each attempt
// passes once on its way to the wire.
func (c *requestCounter) add(stack *middleware.Stack) error {
	return stack.Finalize.Add(middleware.FinalizeMiddlewareFunc("orgforgeRequestCounter",
		func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			c.n.Add(1)
			awsRequests.WithLabelValues(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx)).Inc()
			return next.HandleFinalize(ctx, in)
		}), middleware.After)
}

// Requests is how many requests the service has sent to S3 and IAM, each
// attempt counted, those signed with an organization's key included.
func (s *Service) Requests() int64 { return s.requests.n.Load() }
