package service

import (
	"strings"
	"testing"
)

// TestResourceSegmentsAreBounded: an ARN's resource is split into at
// most five segments, whatever its slashes, and one of many is still
// refused for them.
func TestResourceSegmentsAreBounded(t *testing.T) {
	res := "table/Orders" + strings.Repeat("/", 100000)
	if segs := resourceSegments(res); len(segs) != 5 {
		t.Errorf("%d segments; want 5, the last holding the rest", len(segs))
	}
	var vs violations
	if _, ok := parseARN(&vs, "backup_arn", "arn:aws:dynamodb:us-east-1:111111111111:"+res, true); ok || len(vs) != 1 {
		t.Errorf("parseARN of a resource of 100,000 slashes: ok, violations %v; want it refused", vs)
	}
	var tvs violations
	if _, ok := parseARN(&tvs, "table_name", "arn:aws:dynamodb:us-east-1:111111111111:table/Orders/x/y/z/w", false); ok || len(tvs) != 1 ||
		!strings.Contains(tvs[0].Description, "extra path segments") {
		t.Errorf("a table ARN of extra segments: %v; want them refused", tvs)
	}
}
