package mapping

import (
	"os"
	"strings"
	"testing"
)

// TestSchemaDocumented keeps docs/schema.md in step with DefaultSchema: every
// table, column and view must be named there, each column in its table's section.
func TestSchemaDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/schema.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	s := DefaultSchema()
	for _, tb := range s.Tables {
		head := "### `" + tb.Name + "`"
		start := strings.Index(doc, head)
		if start < 0 {
			t.Errorf("docs/schema.md has no section %q", head)
			continue
		}
		section := doc[start+len(head):]
		if end := strings.Index(section, "\n#"); end >= 0 {
			section = section[:end]
		}
		for _, c := range tb.Columns {
			if !strings.Contains(section, "| `"+c.Name+"` |") {
				t.Errorf("docs/schema.md, section %s: column %s is missing", tb.Name, c.Name)
			}
		}
	}
	for _, v := range s.Views {
		if !strings.Contains(doc, "### `"+v.Name+"`") {
			t.Errorf("docs/schema.md has no section for view %s", v.Name)
		}
	}
	if n := len(ExampleQueries(doc)); n < 6 {
		t.Errorf("docs/schema.md has %d example queries, want at least 6", n)
	}
}
