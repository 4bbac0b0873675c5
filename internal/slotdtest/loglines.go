package slotdtest

// LogLines returns the raw log lines so far (at most logLinesMax), as
// slotd wrote them, for tests that read its log as a file.
func (s *Server) LogLines() [][]byte {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	out := make([][]byte, len(s.logs))
	copy(out, s.logs)
	return out
}
