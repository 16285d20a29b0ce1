-- Fixed people that the sample requests and the tests ask about. Generated people get ids from 1000 up.
-- Portable between SQLite and PostgreSQL, like schema.sql.
INSERT INTO person (id, last_name, first_name, middle_name, birth_date, sex, snils) VALUES
    (1, 'Иванов', 'Иван', 'Иванович', '1980-05-14', 'M', '112-233-445 95'),
    (2, 'Петрова', 'Анна', 'Сергеевна', '1992-11-02', 'F', '123-456-789 64'),
    (3, 'О''Коннор', 'Мария', NULL, '1975-01-30', 'F', '087-654-303 00'),
    (4, 'Иванова', 'Елена', 'Петровна', '1982-08-21', 'F', '145-226-371 45'),
    (5, 'Иванов', 'Пётр', 'Иванович', '2008-02-03', 'M', NULL),
    (6, 'Иванова', 'Софья', 'Ивановна', '2012-10-17', 'F', NULL);
INSERT INTO passport (id, person_id, series, number, issued_on, issued_by) VALUES
    (1, 1, '4510', '123456', '2005-06-01', 'ОВД района Хамовники г. Москвы'),
    (2, 2, '4012', '654321', '2012-12-20', 'ТП УФМС России по Санкт-Петербургу'),
    (3, 3, '6003', '000111', '2020-02-11', 'ГУ МВД России по Ростовской области'),
    (4, 4, '4511', '220033', '2004-09-15', 'ОВД района Хамовники г. Москвы'),
    (5, 5, '4522', '908070', '2022-03-01', 'ГУ МВД России по г. Москве');
INSERT INTO address (id, postal_code, region, city, street, house, flat) VALUES
    (1, '119021', 'г. Москва', 'Москва', 'ул. Льва Толстого', '16', '12'),
    (2, '191186', 'г. Санкт-Петербург', 'Санкт-Петербург', 'Невский пр.', '28', NULL),
    (3, '344002', 'Ростовская обл.', 'Ростов-на-Дону', 'ул. Большая Садовая', '47', '3');
INSERT INTO registration (id, person_id, address_id, registered_on, deregistered_on) VALUES
    (1, 1, 1, '2006-03-10', NULL),
    (2, 2, 2, '2013-01-15', NULL),
    (3, 3, 1, '2001-07-07', '2020-03-01'),
    (4, 4, 1, '2006-03-10', NULL),
    (5, 5, 1, '2008-02-20', NULL),
    (6, 6, 1, '2012-11-01', NULL);
-- Person 3 has no current registration: asking about her passport answers NO_DATA.
INSERT INTO kinship (person_id, relative_id, relation) VALUES
    (1, 4, 'SPOUSE'), (1, 5, 'CHILD'), (1, 6, 'CHILD'),
    (4, 1, 'SPOUSE'), (4, 5, 'CHILD'), (4, 6, 'CHILD'),
    (5, 1, 'PARENT'), (5, 4, 'PARENT');
-- Person 2 has no relatives on record: her family answer holds just her.
INSERT INTO employer (inn, name) VALUES
    ('7701234567', 'ООО «Ромашка»'),
    ('7709876543', 'АО «Вектор & Ко»');
INSERT INTO income (id, person_id, employer_inn, period, amount, tax) VALUES
    (1, 1, '7701234567', '2024-01-01', 120000.00, 15600.00),
    (2, 1, '7701234567', '2024-02-01', 120000.00, 15600.00),
    (3, 1, '7701234567', '2024-03-01', 132500.50, 17225.07),
    (4, 1, '7709876543', '2024-02-01', 35000.00, 4550.00),
    (5, 1, '7701234567', '2023-12-01', 118000.00, 15340.00),
    (6, 2, '7709876543', '2024-01-01', 64000.00, 8320.00);
-- Person 1 earns from two employers in Q1 2024; December 2023 lies outside that period.
