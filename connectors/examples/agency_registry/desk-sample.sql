-- Three rows to try the connector with (connectors/README.md, "Run"): a dossier received and
-- its result handed back, and a receipt whose procedure code the desk left empty, which the
-- runtime dead-letters. The names are made up.
INSERT INTO nhat_ky_ho_so (ma_giao_dich, ma_ho_so, loai, thoi_diem, ma_thu_tuc, kenh, nguoi_nop)
VALUES
    ('3f1c2a9e-5b7d-4c11-9e2a-6d0b8f4a1c01', '005.01.00.H40-251203-0001', 'TIEP_NHAN',
     '2025-12-03 08:15:00', '1.001193', 1, 'Phan Thị Mai'),
    ('3f1c2a9e-5b7d-4c11-9e2a-6d0b8f4a1c02', '005.01.00.H40-251203-0001', 'TRA_KET_QUA',
     '2025-12-03 16:40:00', NULL, NULL, NULL),
    ('3f1c2a9e-5b7d-4c11-9e2a-6d0b8f4a1c03', '005.01.00.H40-251203-0002', 'TIEP_NHAN',
     '2025-12-03 09:05:00', NULL, 2, 'Võ Văn Hùng');
