package emulator

import (
	"io"
	"net/http"
)

// The control endpoints (see the package comment and localRouter).

func (s *Server) localStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) localResetStats(w http.ResponseWriter, _ *http.Request) {
	s.ResetStats()
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) localFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Faults())
}

func (s *Server) localSetFaults(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	if err != nil {
		writeAPIError(w, problem(http.StatusBadRequest, "reading body: "+err.Error()))
		return
	}
	var f Faults
	if ae := decodeBody(body, &f); ae != nil {
		writeAPIError(w, ae)
		return
	}
	if err := s.SetFaults(f); err != nil {
		writeAPIError(w, problem(http.StatusBadRequest, err.Error()))
		return
	}
	writeJSON(w, http.StatusOK, s.Faults())
}
