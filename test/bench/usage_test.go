package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestMeasureScrapeCountsTheUsageGaugesOnly(t *testing.T) {
	text := []byte(`# HELP orgforge_organization_database_bytes Size.
# TYPE orgforge_organization_database_bytes gauge
orgforge_organization_database_bytes{organization="a"} 7.5e+06
orgforge_organization_storage_objects{organization="a"} 3
orgforge_organization_time_to_ready_seconds_count 1
orgforge_organizations{condition="Ready",status="True"} 1
`)
	want := ScrapeSize{Bytes: len(text), UsageSeries: 2, UsageBytes: 63 + 58, UsageBytesPerLine: 60.5}
	if diff := cmp.Diff(want, measureScrape(text)); diff != "" {
		t.Errorf("measureScrape (-want +got):\n%s", diff)
	}
}
