package aurora

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRulesChangeAtTheMajorsThatChangedPostgreSQL(t *testing.T) {
	before15 := versionRules{memberPrivilege: "MEMBER", securesSchemaPublic: false}
	on15 := versionRules{memberPrivilege: "MEMBER", securesSchemaPublic: true}
	from16 := versionRules{memberPrivilege: "SET", securesSchemaPublic: true, reservedConnections: true}
	cases := map[string]struct {
		version int
		want    versionRules
	}{
		"13.0":           {130000, before15},
		"13.23":          {130023, before15},
		"14.23":          {140023, before15},
		"last before 15": {149999, before15},
		"15.0":           {150000, on15},
		"15.18":          {150018, on15},
		"16.0":           {160000, from16},
		"16.14":          {160014, from16},
		"17.10":          {170010, from16},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(tc.want, rulesFor(tc.version), cmp.AllowUnexported(versionRules{})); diff != "" {
				t.Errorf("rulesFor(%d) (-want +got):\n%s", tc.version, diff)
			}
		})
	}
}
