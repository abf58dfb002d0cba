-- The commune one-stop desk software's dossier journal, as that software creates it. The
-- connector only reads it; the tests create it with this file to stand in for the desk.
CREATE TABLE IF NOT EXISTS nhat_ky_ho_so (
    id INTEGER PRIMARY KEY AUTOINCREMENT, -- grows with every row: the connector's offset
    ma_giao_dich TEXT NOT NULL UNIQUE,    -- the row's GUID: the event's event_id
    ma_ho_so TEXT NOT NULL,               -- dossier code (MaHoSo)
    loai TEXT NOT NULL,                   -- TIEP_NHAN (received) or TRA_KET_QUA (returned)
    thoi_diem TEXT NOT NULL,              -- when, ISO 8601; local time when without offset
    ma_thu_tuc TEXT,                      -- procedure code (TIEP_NHAN only)
    kenh INTEGER,                         -- channel: 1 at the desk, 2 online, 3 by post
    nguoi_nop TEXT                        -- the applicant's name: personal data
);
