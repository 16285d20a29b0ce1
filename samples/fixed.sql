-- Fixed people that the sample requests and the tests ask about. Generated people get ids from 1000 up.
INSERT INTO person (id, last_name, first_name, middle_name, birth_date, sex) VALUES
    (1, 'Иванов', 'Иван', 'Иванович', '1980-05-14', 'M'),
    (2, 'Петрова', 'Анна', 'Сергеевна', '1992-11-02', 'F'),
    (3, 'О''Коннор', 'Мария', NULL, '1975-01-30', 'F');
INSERT INTO passport (id, person_id, series, number, issued_on, issued_by) VALUES
    (1, 1, '4510', '123456', '2005-06-01', 'ОВД района Хамовники г. Москвы'),
    (2, 2, '4012', '654321', '2012-12-20', 'ТП УФМС России по Санкт-Петербургу'),
    (3, 3, '6003', '000111', '2020-02-11', 'ГУ МВД России по Ростовской области');
INSERT INTO address (id, postal_code, region, city, street, house, flat) VALUES
    (1, '119021', 'г. Москва', 'Москва', 'ул. Льва Толстого', '16', '12'),
    (2, '191186', 'г. Санкт-Петербург', 'Санкт-Петербург', 'Невский пр.', '28', NULL),
    (3, '344002', 'Ростовская обл.', 'Ростов-на-Дону', 'ул. Большая Садовая', '47', '3');
INSERT INTO registration (person_id, address_id, registered_on, deregistered_on) VALUES
    (1, 1, '2006-03-10', NULL),
    (2, 2, '2013-01-15', NULL),
    (3, 1, '2001-07-07', '2020-03-01');
-- Person 3 has no current registration: asking about her passport answers NO_DATA.
