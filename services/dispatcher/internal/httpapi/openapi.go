package httpapi

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/contactd/dispatcher/docs"
)

// getSpec serves the OpenAPI description of this API (docs/openapi.yaml,
// compiled in).
func (s *Server) getSpec(c echo.Context) error {
	b, err := docs.FS.ReadFile("openapi.yaml")
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/yaml", b)
}
