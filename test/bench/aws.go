package main

import (
	"fmt"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
)

// AWSCalls are the operator's requests to S3 and IAM in the steady-state
// window, by its orgforge_aws_requests_total counter (each attempt, those
// signed with an organization's key included). The operator is started
// afresh for the window, so the counter holds the window's requests alone.
type AWSCalls struct {
	// ByOperation is keyed "service/operation", e.g. "IAM/ListUsers".
	ByOperation map[string]int `json:"byOperation"`
	Total       int            `json:"total"`
	// PerOrgPerPass is Total over N and the window's passes (its drift
	// checks over N): issue 18's budget is 1.5.
	PerOrgPerPass float64 `json:"perOrgPerPass"`
}

// awsCalls reads the window's AWS requests from the operator's metrics.
func awsCalls(fams map[string]*dto.MetricFamily, n int, passes float64) *AWSCalls {
	a := &AWSCalls{ByOperation: map[string]int{}}
	for l, m := range series(fams, "orgforge_aws_requests_total", nil) {
		v := int(m.GetCounter().GetValue())
		a.ByOperation[l["service"]+"/"+l["operation"]] += v
		a.Total += v
	}
	if n > 0 && passes > 0 {
		a.PerOrgPerPass = round(float64(a.Total)/float64(n)/passes, 2)
	}
	return a
}

// writeAWSCalls reports the steady state's AWS requests under its table.
func writeAWSCalls(w func(string, ...any), a *AWSCalls) {
	if a == nil {
		return
	}
	ops := make([]string, 0, len(a.ByOperation))
	for op, v := range a.ByOperation {
		ops = append(ops, fmt.Sprintf("%s %d", op, v))
	}
	slices.Sort(ops)
	w("AWS requests in the window: **%d**, **%.2f per organization and pass** (issue 18's budget: 1.5); %s.\n\n",
		a.Total, a.PerOrgPerPass, strings.Join(ops, ", "))
}

// awsTarget is issue 18's budget of AWS requests per organization per pass
// at rest.
func awsTarget(st *SteadyResult, access string, status func(measured, met bool) string) Target {
	t := Target{Name: "AWS requests per organization per pass at rest", Want: "≤ 1.5", Got: "-", Status: status(false, false)}
	if st == nil || st.AWS == nil {
		return t
	}
	t.Name += fmt.Sprintf(" (N=%d, storage.access %s, %.1f passes)", st.N, access, st.Passes)
	t.Got = fmt.Sprintf("%.2f (%d requests)", st.AWS.PerOrgPerPass, st.AWS.Total)
	t.Status = status(st.Passes >= 3, st.AWS.PerOrgPerPass <= 1.5)
	return t
}
