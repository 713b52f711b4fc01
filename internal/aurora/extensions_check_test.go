package aurora

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckExtensionsRefusesWhatATenantCannotCreate(t *testing.T) {
	s := newService(t)
	ctx := testContext(t)
	cases := map[string]struct {
		exts []string
		want string
	}{
		"none":                   {nil, ""},
		"trusted extensions":     {[]string{"pgcrypto", "citext", "pgcrypto"}, ""},
		"one the server lacks":   {[]string{"pgcrypto", "no_such_extension"}, `extension "no_such_extension" is not available`},
		"superuser only":         {[]string{"file_fdw", "dblink"}, `extension "dblink" and "file_fdw" can only be created by a superuser`},
		"name the server cuts":   {[]string{strings.Repeat("e", 64)}, "longer than 63 bytes"},
		"name with a NUL":        {[]string{"pg\x00crypto"}, "not valid UTF-8 text"},
		"SQL posing as its name": {[]string{"pgcrypto; DROP DATABASE postgres"}, `extension "pgcrypto; DROP DATABASE postgres" is not available`},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ddl := s.DDLCount()
			err := s.CheckExtensions(ctx, tc.exts)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("CheckExtensions(%q): %v", tc.exts, err)
			case tc.want != "" && (!errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("CheckExtensions(%q) = %v; want ErrInvalid saying %q", tc.exts, err, tc.want)
			}
			if s.DDLCount() != ddl {
				t.Error("CheckExtensions sent DDL")
			}
		})
	}
}
